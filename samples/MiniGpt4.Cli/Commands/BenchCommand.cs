using System.CommandLine;
using MiniGpt4.Cli.Bench;
using MiniGpt4.Cli.Options;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>bench</c>: load, image encode, prefill and decode speed of a model, each beside the ceiling measured in the same
/// process (read bandwidth, bf16 GEMM rate) and the fraction of it reached. See <see cref="BenchRunner"/>.
/// </summary>
internal sealed class BenchCommand : ModelCommand
{
    /// <inheritdoc/>
    protected override bool UsesBundledModel => false;

    private readonly LoadOptionSet _load = new();
    private readonly Option<int[]?> _context = CliOption.IntCsv("--context",
        "Cached positions to decode at, comma-separated (each is also a prefill measurement) [default: 16,1024,2048]");
    private readonly Option<int[]?> _concurrency = CliOption.IntCsv("--concurrency",
        "Concurrent requests per decode measurement, comma-separated [default: 1]");
    private readonly Option<int?> _runs = CliOption.Int("--runs", "Rounds of every measurement; figures are min/median/max over them [default: 3]");
    private readonly Option<int?> _newTokens = CliOption.Int("--new-tokens", "Greedy tokens decoded per measurement [default: 32]");
    private readonly Option<OutputFormat?> _format = OutputFormatOption.Create(
        "text prints a table; json prints one object (read_bandwidth_gbs, gemm_bf16_gflops, load_seconds, image_encode_ms, prefill, decode) [default: text]");

    public BenchCommand() : base("bench",
        "Measure read bandwidth and the bf16 GEMM rate, then the model's load, image encode (if it has a vision tower), prefill and " +
        "decode speed at each context, each with the fraction of its ceiling reached. Progress on stderr, results on stdout.",
        HelpTexts.RequiredModelOption)
    {
        _load.AddTo(this);
        Options.Add(_context);
        Options.Add(_concurrency);
        Options.Add(_runs);
        Options.Add(_newTokens);
        Options.Add(_format);
        CliOption.Range(_runs, 1, 1000);
        CliOption.Range(_newTokens, 2, 4096);
    }

    protected override async Task<int> RunAsync(ParseResult r, string model, CancellationToken ct)
    {
        var load = _load.Read(r);
        var concurrency = r.GetValue(_concurrency) is { Length: > 0 } k ? k : [1];
        load = load with { MaxConcurrentRequests = Math.Max(load.MaxConcurrentRequests, concurrency.Max()), MaxQueuedRequests = Math.Max(load.MaxQueuedRequests, concurrency.Max()) };
        var threads = load.Threads ?? TorchSharp.torch.get_num_threads();
        var settings = new BenchSettings(model, load, threads, r.GetValue(_context) is { Length: > 0 } c ? c : [16, 1024, 2048], concurrency,
            r.GetValue(_runs) ?? 3, r.GetValue(_newTokens) ?? 32);
        var result = await BenchRunner.RunAsync(settings, Console.Error, ct);
        Console.Write(r.GetValue(_format) == OutputFormat.Json ? BenchReport.Json(result) + "\n" : BenchReport.Text(result));
        return ExitCodes.Ok;
    }
}
