using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Playwright;
using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Serving;

/// <summary>
/// The chat page in headless Chromium (Debian's package; Playwright is pointed at it and never downloads a browser),
/// used with the keyboard alone at a 390×844 viewport.
/// </summary>
public class ChatPageBrowserTests(ITestOutputHelper output)
{
    /// <summary>Debian's chromium (MINIGPT4_CHROMIUM overrides); skips when absent, fails under CI=true.</summary>
    private static string Chromium()
    {
        var path = Environment.GetEnvironmentVariable("MINIGPT4_CHROMIUM") ?? "/usr/bin/chromium";
        if (File.Exists(path)) return path;
        var reason = $"chromium not found at {path} (eng/bootstrap-linux.sh installs it)";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException(reason + " (CI=true: the browser test is required)");
        Skip.If(true, reason);
        return path;
    }

    /// <summary>Presses Tab until the focused element matches <paramref name="selector"/>.</summary>
    private static async Task TabToAsync(IPage page, string selector)
    {
        for (var i = 0; i < 40; i++)
        {
            await page.Keyboard.PressAsync("Tab");
            if (await page.EvaluateAsync<bool>("s => document.activeElement && document.activeElement.matches(s)", selector)) return;
        }
        Assert.Fail($"Tab never reached {selector}");
    }

    private static async Task TypeNumberAsync(IPage page, string selector, string value)
    {
        await TabToAsync(page, selector);
        await page.Keyboard.PressAsync("Control+A");
        await page.Keyboard.TypeAsync(value);
    }

    /// <summary>Waits until <paramref name="count"/> answers are finished (not busy) and returns their texts.</summary>
    private static async Task<string[]> AnswersAsync(IPage page, int count)
    {
        await page.WaitForFunctionAsync(
            "n => document.querySelectorAll('.msg.assistant').length === n && !document.querySelector('[aria-busy]') && !document.getElementById('send').disabled",
            count, new PageWaitForFunctionOptions { Timeout = 120_000 });
        return (await page.Locator(".msg.assistant .text").AllTextContentsAsync()).ToArray();
    }

    [SkippableFact]
    public async Task Upload_ask_stream_and_follow_up_with_the_keyboard_only_at_390x844()
    {
        var chromium = Chromium();
        var image = Oracle.Image("a_gradient_shapes_640x480.png");
        await using var host = await ServingHost.StartAsync();
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = chromium, Headless = true });
        var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 390, Height = 844 } });
        // Listening for the file chooser from the start: Playwright asks the browser to intercept file choosers when the
        // first listener is added, without waiting for it, so a listener added just before the key press (as
        // RunAndWaitForFileChooserAsync does) raced the press, and about one run in five timed out with no chooser.
        var chooserShown = new TaskCompletionSource<IFileChooser>(TaskCreationOptions.RunContinuationsAsynchronously);
        page.FileChooser += (_, c) => chooserShown.TrySetResult(c);
        await page.GotoAsync(host.BaseAddress.ToString());
        await page.WaitForFunctionAsync("() => document.getElementById('model').textContent.includes('ready')");
        // Counts the updates of answer text (one mutation record per streamed delta the page applies, however the
        // network batched them): more than one means the answer was shown piece by piece while it streamed.
        await page.EvaluateAsync(@"() => { window.__streamed = 0; new MutationObserver((records) => {
            for (const r of records) if (r.target.classList && r.target.classList.contains('text') && r.target.closest('.msg.assistant')) window.__streamed++;
          }).observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true }); }");

        // Settings: greedy, 24 tokens (so the answer can be checked against the API's).
        await TabToAsync(page, "summary");
        await page.Keyboard.PressAsync("Enter");
        await TypeNumberAsync(page, "#temperature", "0");
        await TypeNumberAsync(page, "#max_tokens", "24");

        // The image, through the file chooser opened from the keyboard.
        await page.Keyboard.PressAsync("Shift+Tab"); // leave the settings, then tab round to the file input
        await TabToAsync(page, "#images");
        await page.Keyboard.PressAsync("Space");
        var chooser = await chooserShown.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await chooser.SetFilesAsync(image);
        await page.WaitForSelectorAsync("#attachments img");

        await TabToAsync(page, "#question");
        await page.Keyboard.TypeAsync("Describe this image in detail.");
        await page.Keyboard.PressAsync("Enter");
        var first = await AnswersAsync(page, 1);
        Assert.False(string.IsNullOrWhiteSpace(first[0]));
        Assert.True(await page.EvaluateAsync<int>("() => window.__streamed") > 1, "the answer appeared piece by piece");

        // Focus is back in the question box: the follow-up needs no Tab.
        Assert.True(await page.EvaluateAsync<bool>("() => document.activeElement.id === 'question'"));
        await page.Keyboard.TypeAsync("What colours are in it?");
        await page.Keyboard.PressAsync("Enter");
        var both = await AnswersAsync(page, 2);
        Assert.Equal(first[0], both[0]);
        Assert.False(string.IsNullOrWhiteSpace(both[1]));
        Assert.Equal(0, await page.Locator(".msg.error").CountAsync());
        Assert.Equal(2, await page.Locator(".msg.user").CountAsync());
        Assert.True(await page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth <= window.innerWidth"), "no horizontal scrolling at 390 px");

        // The page's first answer is the API's greedy answer to the same request.
        using var api = await host.PostAsync(new JsonObject
        {
            ["messages"] = new JsonArray(ServingHost.User("Describe this image in detail.", ServingHost.DataUri("a_gradient_shapes_640x480.png"))),
            ["temperature"] = 0, ["top_p"] = 0.9, ["num_beams"] = 1, ["max_tokens"] = 24,
        });
        Assert.Equal(HttpStatusCode.OK, api.StatusCode);
        Assert.Equal(JsonNode.Parse(await api.Content.ReadAsStringAsync())!["choices"]![0]!["message"]!["content"]!.GetValue<string>(), first[0]);

        var shot = Environment.GetEnvironmentVariable("MINIGPT4_CHAT_SCREENSHOT") ?? Path.Combine(Path.GetTempPath(), "minigpt4-chat-page.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });
        output.WriteLine($"screenshot: {shot}");
    }
}
