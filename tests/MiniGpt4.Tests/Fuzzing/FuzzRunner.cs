using System.Diagnostics;
using System.Globalization;
using System.Text;
using CsCheck;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Fuzzing;

/// <summary>
/// Runs one seeded fuzz target: cases are drawn from a CsCheck generator with an explicit
/// <see cref="PCG"/> (stream = the target's name, seed = <see cref="Seed"/>), so a run is the same
/// sequence of cases on every machine. (CsCheck's own <c>Check.Sample</c> seeds only its first
/// iteration and draws the rest from the clock, which CI cannot reproduce.)
/// <para>Per case the property must hold: the action returns or throws one of the target's allowed
/// exception types (never anything else), allocates at most <see cref="ManagedBudgetBytes"/> managed
/// bytes and grows the peak resident set by at most <see cref="RssBudgetBytes"/>, and finishes within
/// <see cref="CaseTimeout"/> (a hung case ends the process with the case's seed, since a thread
/// cannot be aborted). A crash ends the test run, which fails it.</para>
/// <para>Knobs (docs/testing.md): <c>MINIGPT4_FUZZ_ITERATIONS</c> (cases per target, or a factor of the
/// CI counts when it ends in <c>x</c>, e.g. <c>20x</c>), <c>MINIGPT4_FUZZ_SECONDS</c> (time per target
/// instead of a count), <c>MINIGPT4_FUZZ_SEED</c> (another sequence), <c>MINIGPT4_FUZZ_CASE</c>
/// (<c>target/seed</c> printed by a failure: replays that one case).</para>
/// </summary>
internal static class FuzzRunner
{
    /// <summary>The CI seed ("MiniGPT4" in ASCII).</summary>
    public const ulong DefaultSeed = 0x4D696E6947505434;

    public const long ManagedBudgetBytes = 96L << 20;
    public const long RssBudgetBytes = 256L << 20;
    public static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(60);
    private const int MaxReportedFailures = 8;

    public static ulong Seed => Environment.GetEnvironmentVariable("MINIGPT4_FUZZ_SEED") is { Length: > 0 } s
        ? s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.Parse(s.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)
            : ulong.Parse(s, CultureInfo.InvariantCulture)
        : DefaultSeed;

    /// <summary>
    /// Time cap per target of a default (CI) run: on a slow or busy machine a target stops after this
    /// long, having run a prefix of the same case sequence, so the whole set stays under two minutes.
    /// </summary>
    public static readonly TimeSpan CiTimeCap = TimeSpan.FromSeconds(10);

    /// <summary>The fuzz budget of this run: a case count, a time per target, or both (CI: the count, capped at <see cref="CiTimeCap"/>).</summary>
    public static (long Iterations, TimeSpan? Time) Budget(int ciIterations)
    {
        if (Environment.GetEnvironmentVariable("MINIGPT4_FUZZ_SECONDS") is { Length: > 0 } secs)
            return (long.MaxValue, TimeSpan.FromSeconds(double.Parse(secs, CultureInfo.InvariantCulture)));
        if (Environment.GetEnvironmentVariable("MINIGPT4_FUZZ_ITERATIONS") is { Length: > 0 } iters)
            return iters.EndsWith('x')
                ? ((long)(ciIterations * double.Parse(iters[..^1], CultureInfo.InvariantCulture)), null)
                : (long.Parse(iters, CultureInfo.InvariantCulture), null);
        return (ciIterations, CiTimeCap);
    }

    /// <summary>
    /// Runs <paramref name="property"/> on cases of <paramref name="gen"/> and throws (failing the test) with
    /// every distinct failure: its case seed, the case (<paramref name="describe"/>), and where the failing input
    /// was saved (<paramref name="save"/>). Returns the statistics line it also writes to <paramref name="output"/>.
    /// </summary>
    public static string Run<T>(string target, Gen<T> gen, Action<T> property, Func<T, string> describe, int ciIterations,
        Type[] allowed, ITestOutputHelper? output = null, Func<T, byte[]>? save = null)
    {
        var replay = Environment.GetEnvironmentVariable("MINIGPT4_FUZZ_CASE");
        string? replaySeed = null;
        if (!string.IsNullOrEmpty(replay))
        {
            var slash = replay.IndexOf('/');
            if (slash < 0 || replay[..slash] != target) return $"{target}: skipped (MINIGPT4_FUZZ_CASE={replay})";
            replaySeed = replay[(slash + 1)..];
        }

        var (iterations, time) = replaySeed is null ? Budget(ciIterations) : (1, null);
        var pcg = replaySeed is null ? new PCG(StreamOf(target), Seed) : PCG.Parse(replaySeed);
        var clock = Stopwatch.StartNew();
        var failures = new List<string>();
        var signatures = new HashSet<string>(StringComparer.Ordinal);
        var outcomes = new SortedDictionary<string, long>(StringComparer.Ordinal);
        long cases = 0, maxManaged = 0, maxRss = 0;
        var watchdog = new Watchdog(target);
        try
        {
            while (cases < iterations && (time is null || clock.Elapsed < time))
            {
                var state = pcg.State;
                var caseSeed = pcg.ToString(state);
                var value = gen.Generate(pcg, null, out _);
                cases++;
                Exception? thrown = null;
                watchdog.Start(caseSeed, () => describe(value));
                var rssBefore = MemoryProbe.Current();
                var peakReset = MemoryProbe.ResetPeak();
                var managedBefore = GC.GetTotalAllocatedBytes(precise: false);
                try { property(value); }
                catch (Exception ex) { thrown = ex; }
                var managed = GC.GetTotalAllocatedBytes(precise: false) - managedBefore;
                var rss = Math.Max(0, (peakReset ? MemoryProbe.Peak() : MemoryProbe.Current()) - rssBefore);
                watchdog.Stop();
                maxManaged = Math.Max(maxManaged, managed);
                maxRss = Math.Max(maxRss, rss);

                string? problem = null, signature = null;
                if (thrown is not null && !allowed.Any(t => t.IsInstanceOfType(thrown)))
                {
                    problem = $"untyped {thrown.GetType().FullName}: {thrown.Message}\n{TopFrames(thrown)}";
                    signature = thrown.GetType().FullName + "@" + FirstFrame(thrown);
                }
                else if (managed > ManagedBudgetBytes || rss > RssBudgetBytes)
                {
                    problem = $"memory: {managed >> 20} MB managed allocations, peak RSS +{rss >> 20} MB (budgets {ManagedBudgetBytes >> 20} / {RssBudgetBytes >> 20} MB)" +
                              (thrown is null ? "" : $"; then {thrown.GetType().Name}: {thrown.Message}");
                    signature = "memory";
                }
                var outcome = thrown is null ? "accepted" : thrown.GetType().Name;
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
                if (problem is null || !signatures.Add(signature!) || failures.Count >= MaxReportedFailures) continue;
                var saved = save is null ? "" : "\n  input saved to " + SaveInput(target, caseSeed, save(value));
                failures.Add($"case {cases} (replay: MINIGPT4_FUZZ_CASE={target}/{caseSeed}): {problem}\n  input: {Cut(describe(value), 600)}{saved}");
            }
        }
        finally
        {
            watchdog.Dispose();
        }

        var stats = $"{target}: {cases} cases in {clock.Elapsed.TotalSeconds:F1} s (seed 0x{Seed:X}{(replaySeed is null ? "" : ", replay " + replaySeed)}); " +
                    $"outcomes {string.Join(", ", outcomes.Select(kv => $"{kv.Key} {kv.Value}"))}; " +
                    $"max per case {maxManaged >> 10} KB managed, peak RSS +{maxRss >> 10} KB";
        output?.WriteLine(stats);
        if (failures.Count > 0)
            throw new Xunit.Sdk.XunitException($"{stats}\n{failures.Count} distinct failure(s) (allowed: {string.Join(", ", allowed.Select(t => t.Name))}):\n" +
                                               string.Join("\n", failures));
        return stats;
    }

    private static uint StreamOf(string target)
    {
        uint h = 2166136261;
        foreach (var c in target) h = (h ^ c) * 16777619;
        return h;
    }

    private static string SaveInput(string target, string caseSeed, byte[] bytes)
    {
        var dir = Path.Combine(Path.GetTempPath(), "minigpt4-fuzz-failures", target);
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, caseSeed + ".bin");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static string FirstFrame(Exception ex)
        => new StackTrace(ex, false).GetFrames().Select(f => f.GetMethod()).FirstOrDefault(m => m is not null)?.ToString() ?? "?";

    private static string TopFrames(Exception ex)
        => string.Join("\n", (ex.StackTrace ?? "").Split('\n').Take(8).Select(l => "    " + l.Trim()));

    private static string Cut(string s, int max) => s.Length <= max ? s : s[..max] + "...";

    /// <summary>Ends the process when one case runs past <see cref="CaseTimeout"/>, naming it (a hang cannot be interrupted otherwise).</summary>
    private sealed class Watchdog : IDisposable
    {
        private readonly string _target;
        private readonly Timer _timer;
        private long _startedTicks = -1;
        private string _seed = "";
        private Func<string> _describe = () => "";

        public Watchdog(string target)
        {
            _target = target;
            _timer = new Timer(_ => Check(), null, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
        }

        public void Start(string seed, Func<string> describe)
        {
            _seed = seed;
            _describe = describe;
            Interlocked.Exchange(ref _startedTicks, Stopwatch.GetTimestamp());
        }

        public void Stop() => Interlocked.Exchange(ref _startedTicks, -1);

        private void Check()
        {
            var started = Interlocked.Read(ref _startedTicks);
            if (started < 0 || Stopwatch.GetElapsedTime(started) < CaseTimeout) return;
            var message = $"fuzz case hung for over {CaseTimeout.TotalSeconds} s: MINIGPT4_FUZZ_CASE={_target}/{_seed}: {Cut(_describe(), 600)}";
            Console.Error.WriteLine(message);
            Environment.FailFast(message);
        }

        public void Dispose() => _timer.Dispose();
    }
}

/// <summary>Builds readable case descriptions.</summary>
internal static class Describe
{
    public static string Bytes(ReadOnlySpan<byte> b, int max = 48)
    {
        var sb = new StringBuilder();
        sb.Append(b.Length).Append(" bytes: ").Append(Convert.ToHexString(b[..Math.Min(max, b.Length)]));
        if (b.Length > max) sb.Append("...");
        return sb.ToString();
    }
}
