using MiniGpt4.WebHost;

// An HTTP service that answers questions about uploaded images.
//   dotnet run --project samples/MiniGpt4.WebHost -- --model /models/minigpt4/minigpt4.json --urls http://127.0.0.1:5080
//   curl -F image=@photo.jpg -F question="Describe this image." http://127.0.0.1:5080/v1/ask
//   curl -N -F image=@photo.jpg -F question="Describe this image." http://127.0.0.1:5080/v1/ask/stream
var app = WebHostApp.Build(args);
await app.RunAsync();
