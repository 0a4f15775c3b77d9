// MiniGpt4.NET console sample: chat, generate, batch, tokenize, convert, synth, world, world-score, bench. The verbs live in Commands/, one file each;
// CliApp parses the command line and maps failures to exit codes (0 ok, 1 library error, 2 usage, 130 Ctrl+C).
return await MiniGpt4.Cli.CliApp.RunAsync(args);
