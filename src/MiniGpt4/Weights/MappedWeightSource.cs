using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>
/// A weight source over tensors at known byte ranges of one or more files (safetensors, the stored
/// records of a torch zip archive, or the shards of an index). Reading goes straight from the file
/// into the destination tensor (one copy from the page cache) or, for <see cref="Load"/> with the
/// file's dtype on CPU, is a zero-copy view of a private memory map.
/// </summary>
internal sealed class MappedWeightSource : IWeightSource
{
    /// <summary>Conversion chunk: bounds the temporary memory of a dtype/device conversion.</summary>
    internal const long ChunkBytes = 32L << 20;
    private const long MaxSpanBytes = 1L << 30;

    private readonly Dictionary<string, (TensorInfo Info, TensorLocation Location)> _entries;
    private readonly string[] _keys;
    private readonly Dictionary<string, SafeFileHandle> _handles = new();
    private readonly object _gate = new();
    private bool _disposed;

    /// <summary>Creates the source; <paramref name="entries"/> must already be validated against the files, keys unique.</summary>
    public MappedWeightSource(string description, IReadOnlyCollection<(TensorInfo Info, TensorLocation Location)> entries)
    {
        Description = description;
        _entries = entries.ToDictionary(e => e.Info.Key, StringComparer.Ordinal);
        _keys = entries.Select(e => e.Info.Key).ToArray();
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <summary>Whether <see cref="TryShareInto"/> may make a module's tensors views of the files' memory maps.</summary>
    public bool ShareFileMemory { get; set; }

    /// <inheritdoc />
    public IReadOnlyCollection<string> Keys => _keys;

    /// <summary>The location of <paramref name="key"/> (tests and diagnostics).</summary>
    internal TensorLocation LocationOf(string key) => Entry(key).Location;

    /// <inheritdoc />
    public bool TryGetInfo(string key, out TensorInfo info)
    {
        info = _entries.GetValueOrDefault(key).Info;
        return info is not null;
    }

    /// <inheritdoc />
    public torch.Tensor Load(string key, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        var (info, _) = Entry(key);
        var target = dtype ?? info.DType;
        var onCpu = device is null || device.type == DeviceType.CPU;
        if (onCpu && target == info.DType && MappedView(key) is { } view) return view;
        return ModuleLoader.LoadOrDispose(torch.empty(info.Shape, target, device ?? torch.CPU), result => ReadInto(key, result));
    }

    /// <inheritdoc />
    public bool TryShareInto(string key, torch.Tensor destination)
    {
        var (info, _) = Entry(key);
        if (!ShareFileMemory || destination.device_type != DeviceType.CPU || destination.dtype != info.DType
            || !destination.is_contiguous() || !destination.shape.SequenceEqual(info.Shape)) return false;
        using var view = MappedView(key);
        if (view is null) return false;
        using var noGrad = torch.no_grad();
        destination.set_(view);
        return true;
    }

    /// <inheritdoc />
    /// <remarks>From the layout alone (no mapping is made): a map the system refuses later means a copy instead.</remarks>
    public bool CanShare(string key) => ShareFileMemory && LaysOutForMapping(key);

    private bool LaysOutForMapping(string key)
    {
        var (info, loc) = Entry(key);
        return loc.Strides is null && info.NumElements > 0 && loc.Offset % DTypes.ElementSize(info.DType) == 0;
    }

    /// <summary>
    /// A zero-copy view of <paramref name="key"/> in a private (copy-on-write) map of its file: the caller may modify
    /// it without touching the file or any other tensor; only the pages it reads become resident. Null when the layout
    /// does not allow it or the mapping is refused (e.g. a shard larger than the commit limit).
    /// </summary>
    private torch.Tensor? MappedView(string key)
    {
        var (info, loc) = Entry(key);
        var elem = DTypes.ElementSize(info.DType);
        if (!LaysOutForMapping(key)) return null;
        using var map = TryMapFile(loc.File, info.DType);
        if (map is null || map.NumberOfElements < loc.Offset / elem + info.NumElements) return null;
        using var flat = map.narrow(0, loc.Offset / elem, info.NumElements);
        return flat.view(info.Shape);
    }

    /// <inheritdoc />
    public long ReadInto(string key, torch.Tensor destination)
    {
        var (info, loc) = Entry(key);
        if (!destination.shape.SequenceEqual(info.Shape))
            throw new MiniGptWeightsException(
                $"{loc.File}: tensor '{key}' has shape {DTypes.FormatShape(info.Shape)}, the destination {DTypes.FormatShape(destination.shape)}",
                loc.File, key);
        var n = info.NumElements;
        if (n == 0) return 0;
        using var noGrad = torch.no_grad();
        var elem = DTypes.ElementSize(info.DType);
        if (destination.device_type == DeviceType.CPU && destination.is_contiguous())
            Runtime.HugePages.Advise(Runtime.TensorMath.Address(destination), n * destination.ElementSize);
        if (loc.Strides is not null || !destination.is_contiguous())
        {
            // Rare (a saved non-contiguous view, a strided destination): read the storage region, let torch gather it.
            using var region = torch.empty(loc.ByteLength / elem, info.DType);
            ReadBytes(loc.File, loc.Offset, region);
            using var view = loc.Strides is null ? region.view(info.Shape) : region.as_strided(info.Shape, loc.Strides, 0);
            destination.copy_(view);
        }
        else if (destination.device_type == DeviceType.CPU && destination.dtype == info.DType)
        {
            ReadBytes(loc.File, loc.Offset, destination);
        }
        else if (destination.device_type == DeviceType.CPU && Runtime.FloatConversion.Handles(info.DType, destination.dtype)
                 && MappedView(key) is { } view)
        {
            // Convert straight from the file's mapped pages: no read buffer, whose fresh pages fault in slowly.
            using (view)
                Runtime.FloatConversion.TryConvert(Runtime.TensorMath.Address(view), info.DType, Runtime.TensorMath.Address(destination),
                    destination.dtype, n, torch.get_num_threads());
        }
        else
        {
            // Convert (dtype and/or device) in bounded chunks: the only extra memory is one chunk.
            var chunk = Math.Max(1, ChunkBytes / elem);
            using var buffer = torch.empty(Math.Min(chunk, n), info.DType);
            using var dstFlat = destination.view(-1);
            for (long start = 0; start < n; start += chunk)
            {
                var count = Math.Min(chunk, n - start);
                using var src = buffer.narrow(0, 0, count);
                ReadBytes(loc.File, loc.Offset + start * elem, src);
                using var dst = dstFlat.narrow(0, start, count);
                dst.copy_(src);
            }
        }
        return n * destination.ElementSize;
    }

    /// <summary>Fills the contiguous CPU tensor <paramref name="target"/> with its byte count from <paramref name="file"/> at <paramref name="offset"/>.</summary>
    private void ReadBytes(string file, long offset, torch.Tensor target)
    {
        var handle = HandleOf(file);
        var elem = (long)target.ElementSize;
        var n = target.NumberOfElements;
        var perSpan = MaxSpanBytes / elem;
        using var flat = target.view(-1);
        for (long first = 0; first < n; first += perSpan)
        {
            using var part = flat.narrow(0, first, Math.Min(perSpan, n - first));
            var span = part.bytes;
            var at = offset + first * elem;
            while (span.Length > 0)
            {
                int read;
                try { read = RandomAccess.Read(handle, span, at); }
                catch (IOException ex) { throw new MiniGptWeightsException($"{file}: read failed at byte {at}: {ex.Message}", file, null, ex); }
                if (read == 0)
                    throw new MiniGptWeightsException($"{file}: file ends at byte {at}, expected more data (truncated?)", file);
                span = span[read..];
                at += read;
            }
        }
    }

    private (TensorInfo Info, TensorLocation Location) Entry(string key)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_entries.TryGetValue(key, out var e)) return e;
        throw new MiniGptWeightsException($"{Description}: no tensor named '{key}'", Description, key);
    }

    private SafeFileHandle HandleOf(string file)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_handles.TryGetValue(file, out var h)) return h;
            try { h = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new MiniGptWeightsException($"{file}: cannot open: {ex.Message}", file, null, ex);
            }
            _handles[file] = h;
            return h;
        }
    }

    private torch.Tensor? TryMapFile(string file, torch.ScalarType dtype)
    {
        var length = RandomAccess.GetLength(HandleOf(file)); // follows symlinks, unlike FileInfo.Length
        try
        {
            return torch.from_file(file, shared: false, size: length / DTypes.ElementSize(dtype), dtype: dtype);
        }
        catch (Exception ex) when (ex is ExternalException or IOException)
        {
            return null;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var h in _handles.Values) h.Dispose();
        }
    }
}

/// <summary>
/// Where a tensor's bytes are: <paramref name="File"/> from byte <paramref name="Offset"/>, in the file's dtype.
/// <paramref name="Strides"/> (in elements) is null for a contiguous (row-major) tensor of exactly
/// <c>numel * elemsize</c> bytes; otherwise <paramref name="ByteLength"/> covers the storage region from the first
/// element to one past the farthest one, and the tensor is <c>as_strided(shape, Strides)</c> over it.
/// </summary>
internal sealed record TensorLocation(string File, long Offset, long ByteLength, long[]? Strides = null);
