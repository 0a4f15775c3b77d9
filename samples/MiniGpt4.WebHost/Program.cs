using MiniGpt4.WebHost;

// An OpenAI-compatible server for MiniGpt4 models, with a chat page at / (docs/serving.md).
//   dotnet run --project samples/MiniGpt4.WebHost -c Release -- --model models/minigpt4.json --urls http://127.0.0.1:5080
//   curl http://127.0.0.1:5080/v1/chat/completions -H 'Content-Type: application/json' \
//     -d '{"messages":[{"role":"user","content":[{"type":"text","text":"Describe this image."},
//          {"type":"image_url","image_url":{"url":"data:image/png;base64,..."}}]}]}'
var app = WebHostApp.Build(args);
await app.RunAsync();
