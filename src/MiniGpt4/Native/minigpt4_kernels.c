// MiniGpt4.NET's optional native kernels: the decode products whose instructions .NET 10 has no intrinsic for.
//
// .NET 10 exposes vpdpbusd only in its 256-bit VEX form (AvxVnni) and in AVX10, and vdpbf16ps not at all, so a CPU
// with AVX512-VNNI and AVX512-BF16 (AMD Zen 4) runs the managed products on plain AVX-512 arithmetic. These functions
// are the same products with 512-bit vpdpbusd (quantized weights) and vdpbf16ps (bf16 weights). They compute exactly
// what src/MiniGpt4/Language/Quantization/QuantMath.cs and src/MiniGpt4/Language/Kernels/GemvMath.cs define (each
// block's integer dot product is exact; the float steps and their order are the same), so every path gives
// bit-identical results; tests compare them. The library is built for any x86-64 CPU: each kernel carries its own
// target attribute and the managed side calls it only when mg_features() says the CPU has it.
//
// Build: cc -O2 -shared -fPIC -ffp-contract=off (src/MiniGpt4/MiniGpt4.csproj does this on Linux x64).

#include <immintrin.h>
#include <stdint.h>

#define MG_VNNI512 1
#define MG_BF16DOT512 2
#define MG_AVX512F 4

// Layout constants of QuantLayout: 32 weights per block, 16 blocks per superblock of 512 weights.
enum { SUPER_WEIGHTS = 512, SUPER_BLOCKS = 16 };

/// What this CPU can run (bit MG_VNNI512: AVX512F + AVX512BW + AVX512-VNNI).
int mg_features(void)
{
    __builtin_cpu_init();
    int f = 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni"))
        f |= MG_VNNI512;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"))
        f |= MG_BF16DOT512;
    if (__builtin_cpu_supports("avx512f"))
        f |= MG_AVX512F;
    return f;
}

// One float16 value rounded to bfloat16 bits as FloatConversion does (widened exactly, nearest-even, NaN -> 0x7FC0).
__attribute__((target("f16c"))) static inline uint16_t f16_round(uint16_t h)
{
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(h));
    uint32_t u = (uint32_t)_mm_cvtsi128_si32(_mm_castps_si128(f));
    int is_nan = (u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0;
    return is_nan ? 0x7FC0 : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// float16 -> bfloat16 as src/MiniGpt4/Runtime/FloatConversion.cs defines it: widened exactly (vcvtph2ps), rounded to
// nearest-even, NaN -> 0x7FC0. A bf16 model reads float16 weights kept as stored through this, a few rows at a time.
// With AVX512-BF16, vcvtne2ps2bf16 rounds 32 values in one instruction (the same rounding for every value a float16
// widens to: none is a float32 subnormal, which it would flush); the float16 NaNs are then replaced. A prefetch 4 KiB
// ahead lets one stream read at the bf16 products' rate: without it the loop's conversions left too few reads in
// flight (one thread over a 2.95 GB mapped file on an Intel Xeon: 7.5-8.9 GB/s without, 11.8-12.7 with; 8 KiB the
// same, 16-32 KiB less).
__attribute__((target("avx512f,avx512bw,avx512bf16,f16c"))) static void f16_to_bf16_bf16(const uint16_t* src, uint16_t* dst, int64_t n, int stream)
{
    const __m512i magnitude = _mm512_set1_epi16(0x7FFF), inf = _mm512_set1_epi16(0x7C00), nan = _mm512_set1_epi16(0x7FC0);
    for (int64_t i = 0; i < n; i += 32)
    {
        _mm_prefetch((const char*)(src + i) + 4096, _MM_HINT_T0);
        __m512i h = _mm512_loadu_si512(src + i);
        __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
        __m512 hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
        __m512i b = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        b = _mm512_mask_mov_epi16(b, _mm512_cmpgt_epu16_mask(_mm512_and_si512(h, magnitude), inf), nan);
        if (stream) _mm512_stream_si512((__m512i*)(dst + i), b);
        else _mm512_storeu_si512(dst + i, b);
    }
}

__attribute__((target("avx512f,f16c"))) static void f16_to_bf16_avx512(const uint16_t* src, uint16_t* dst, int64_t n, int stream)
{
    const __m512i bias = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1), nan = _mm512_set1_epi32(0x7FC0);
    for (int64_t i = 0; i < n; i += 16)
    {
        _mm_prefetch((const char*)(src + i) + 4096, _MM_HINT_T0);
        __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(src + i)));
        __m512i u = _mm512_castps_si512(f);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(_mm512_srli_epi32(u, 16), one)), 16);
        r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), nan);
        if (stream) _mm256_stream_si256((__m256i*)(dst + i), _mm512_cvtepi32_epi16(r));
        else _mm256_storeu_si256((__m256i*)(dst + i), _mm512_cvtepi32_epi16(r));
    }
}

// With stream (and dst 64-byte aligned), the stores bypass the caches: for a destination much larger than them (a
// whole weight matrix for a prefill's product, tens of MB) they save reading each line before it is written
// (one thread, 2.95 GB into a 90 MB buffer: 6.8-7.0 GB/s cached, 9.9-10.2 GB/s streamed).
__attribute__((target("f16c,sse2"))) void mg_f16_to_bf16(const uint16_t* src, uint16_t* dst, int64_t n, int stream)
{
    int64_t whole = n / 32 * 32;
    stream = stream && ((uintptr_t)dst & 63) == 0;
    if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw")) f16_to_bf16_bf16(src, dst, whole, stream);
    else f16_to_bf16_avx512(src, dst, whole, stream);
    if (stream) _mm_sfence();
    for (int64_t i = whole; i < n; i++) dst[i] = f16_round(src[i]);
}

#define VNNI512 __attribute__((target("avx512f,avx512bw,avx512vnni")))

// The canonical sum of the 16 lanes: (i + i+8), then (i + i+4), then (0+2) + (1+3).
__attribute__((target("avx512f"))) static inline float reduce16(__m512 f)
{
    __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(f), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
    __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    float t[4];
    _mm_storeu_ps(t, t4);
    return (t[0] + t[2]) + (t[1] + t[3]);
}

// Sixteen bf16 weight scales (zero-extended, shifted into float32) times sixteen float32 activation scales.
VNNI512 static inline __m512 scales16(const uint16_t* scales, const float* dx)
{
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)scales));
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)), _mm512_loadu_ps(dx));
}

// One Q8 row: weights q+128 (unsigned) times int8 activations; the offsets (-128 * sum x per block) start each sum.
VNNI512 static float q8_dot(const uint8_t* w, const uint16_t* scales, const int8_t* xq, const float* dx,
    const int32_t* offsets, int64_t supers)
{
    __m512 f = _mm512_setzero_ps();
    for (int64_t s = 0; s < supers; s++)
    {
        __m512i sums = _mm512_loadu_si512(offsets + s * SUPER_BLOCKS);
        const uint8_t* ws = w + s * SUPER_WEIGHTS;
        const int8_t* xs = xq + s * SUPER_WEIGHTS;
        for (int j = 0; j < 8; j++)
            sums = _mm512_dpbusd_epi32(sums, _mm512_loadu_si512(ws + 64 * j), _mm512_loadu_si512(xs + 64 * j));
        f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scales16(scales + s * SUPER_BLOCKS, dx + s * SUPER_BLOCKS), f);
    }
    return reduce16(f);
}

// One Q4 row: byte k of 64 holds weight nibbles for the activations at 64v + k (low) and 64(v+4) + k (high), both
// q+8; the offsets (-8 * sum x per block) start the low sums. The high nibbles are multiplied in place as 16(q+8):
// their sums are exact multiples of 16.
VNNI512 static float q4_dot(const uint8_t* w, const uint16_t* scales, const int8_t* xq, const float* dx,
    const int32_t* offsets, int64_t supers)
{
    const __m512i low = _mm512_set1_epi8(0x0F), high = _mm512_set1_epi8((char)0xF0);
    __m512 f = _mm512_setzero_ps();
    for (int64_t s = 0; s < supers; s++)
    {
        __m512i lo = _mm512_loadu_si512(offsets + s * SUPER_BLOCKS), hi = _mm512_setzero_si512();
        const uint8_t* ws = w + s * (SUPER_WEIGHTS / 2);
        const int8_t* xs = xq + s * SUPER_WEIGHTS;
        for (int v = 0; v < 4; v++)
        {
            __m512i a = _mm512_loadu_si512(ws + 64 * v);
            lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(a, low), _mm512_loadu_si512(xs + 64 * v));
            hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(a, high), _mm512_loadu_si512(xs + 64 * (v + 4)));
        }
        __m512i sums = _mm512_add_epi32(lo, _mm512_srai_epi32(hi, 4));
        f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scales16(scales + s * SUPER_BLOCKS, dx + s * SUPER_BLOCKS), f);
    }
    return reduce16(f);
}

/// y[m * out_features + r] = dot(w[r], x[m]) for packed weight rows r in [row_start, row_end) and quantized activation
/// rows m < rows. bits: 8 or 4. Activation row m starts at x + m * x_stride: supers * 512 int8 values, then
/// supers * 16 float32 scales, Q8 offsets and Q4 offsets (int32 each), as QuantizedActivations lays them out.
VNNI512 void mg_quant_rows_vnni512(int bits, const uint8_t* w, const uint16_t* scales, const uint8_t* x, int64_t x_stride,
    float* y, int64_t supers, int64_t out_features, int rows, int64_t row_start, int64_t row_end)
{
    const int64_t row_bytes = supers * (bits == 8 ? SUPER_WEIGHTS : SUPER_WEIGHTS / 2), blocks = supers * SUPER_BLOCKS;
    const int64_t padded = supers * SUPER_WEIGHTS;
    for (int64_t r = row_start; r < row_end; r++)
    {
        const uint8_t* wr = w + r * row_bytes;
        const uint16_t* sr = scales + r * blocks;
        for (int m = 0; m < rows; m++)
        {
            const uint8_t* xm = x + m * x_stride;
            const int8_t* xq = (const int8_t*)xm;
            const float* dx = (const float*)(xm + padded);
            const int32_t* offsets = (const int32_t*)(xm + padded + (bits == 8 ? 4 : 8) * blocks);
            y[m * out_features + r] = bits == 8 ? q8_dot(wr, sr, xq, dx, offsets, supers) : q4_dot(wr, sr, xq, dx, offsets, supers);
        }
    }
}

// ---- bf16 weights times bf16 activations (GemvMath's canonical bf16 dot, 512-bit path) ----
//
// Lane i of a 32-element group holds elements 2i and 2i+1 of both rows; vdpbf16ps adds the odd product, then the even
// one, to lane i, each add rounded to float32 (the products of two bf16 values are exact). Groups alternate between
// two accumulators (a: groups 0, 2, 4, ...; b: 1, 3, 5, ...), the result is the 16-lane sum of a + b, then the
// elements past the last whole group one by one with fused multiply-adds, in order.

#define BF16DOT512 __attribute__((target("avx512f,avx512bf16,fma")))

BF16DOT512 static inline float bf16_value(uint16_t v)
{
    uint32_t u = (uint32_t)v << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

BF16DOT512 static inline __m512bh load_bh(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }

BF16DOT512 static inline __m512bh wload_bf16(const uint16_t* p) { return load_bh(p); }

BF16DOT512 static inline float wvalue_bf16(uint16_t v) { return bf16_value(v); }

BF16DOT512 static inline void wprefetch_bf16(const uint16_t* p) { (void)p; }

// Float16 weights kept as stored, rounded to bf16 as they are read: the values f16_to_bf16 writes (see there), except
// that a NaN weight stays some quiet NaN instead of 0x7FC0 (its products are NaN either way). Two 256-bit loads and no
// NaN fix-up: the conversions share one port with the rest, and one-row products ran 15-25 % slower with them.
#define F16DOT512 __attribute__((target("avx512f,avx512bw,avx512bf16,fma,f16c")))

F16DOT512 static inline __m512bh wload_f16(const uint16_t* p)
{
    __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
    __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(p + 16)));
    return _mm512_cvtne2ps_pbh(hi, lo);
}

F16DOT512 static inline float wvalue_f16(uint16_t v) { return bf16_value(f16_round(v)); }

// The row's 128 bytes 1 KiB ahead: with the conversions in the loop, fewer reads were in flight than the bf16 rows
// get (a C loop over four float16 rows, one thread: 11.0-11.8 GB/s without, 13.2-13.5 with; 4 KiB and more less).
F16DOT512 static inline void wprefetch_f16(const uint16_t* p)
{
    _mm_prefetch((const char*)p + 1024, _MM_HINT_T0);
    _mm_prefetch((const char*)p + 1024 + 64, _MM_HINT_T0);
}

// The dot of one weight row (read through LOADW/WVALUE) and one bf16 activation row: two accumulators over groups of
// 64, one group of 32 into the first, the lanes' canonical sum, the rest one by one.
#define DOT(PREFIX, ATTR)                                                                                              \
ATTR static float PREFIX##_dot(const uint16_t* w, const uint16_t* x, int64_t n)                                        \
{                                                                                                                      \
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();                                                           \
    int64_t k = 0;                                                                                                     \
    for (; k + 64 <= n; k += 64)                                                                                       \
    {                                                                                                                  \
        a = _mm512_dpbf16_ps(a, wload_##PREFIX(w + k), load_bh(x + k));                                                \
        b = _mm512_dpbf16_ps(b, wload_##PREFIX(w + k + 32), load_bh(x + k + 32));                                      \
    }                                                                                                                  \
    if (k + 32 <= n) { a = _mm512_dpbf16_ps(a, wload_##PREFIX(w + k), load_bh(x + k)); k += 32; }                      \
    float sum = reduce16(_mm512_add_ps(a, b));                                                                         \
    for (; k < n; k++) sum = __builtin_fmaf(wvalue_##PREFIX(w[k]), bf16_value(x[k]), sum);                             \
    return sum;                                                                                                        \
}
DOT(bf16, BF16DOT512)
DOT(f16, F16DOT512)

// NW consecutive weight rows with MROWS activation rows (n apart): y[j * stride + i] = dot(w_i, x_j). Four weight rows
// by one activation row is the one-row product of rows read four at a time (the activation loaded once for the four);
// three weight rows by every activation row (up to eight) is the product of several rows, which then reads each
// weight row from memory once (and rounds a float16 weight once for all of them).
#define TILE(PREFIX, ATTR, NW, MROWS)                                                                                   \
ATTR static void PREFIX##_tile##NW##x##MROWS(const uint16_t* w, const uint16_t* x, int64_t n, float* y, int64_t stride) \
{                                                                                                                       \
    __m512 a[NW][MROWS], b[NW][MROWS];                                                                                  \
    for (int i = 0; i < NW; i++) for (int j = 0; j < MROWS; j++) a[i][j] = b[i][j] = _mm512_setzero_ps();               \
    int64_t k = 0;                                                                                                      \
    for (; k + 64 <= n; k += 64)                                                                                        \
    {                                                                                                                   \
        __m512bh w0[NW];                                                                                                \
        for (int i = 0; i < NW; i++) wprefetch_##PREFIX(w + i * n + k);                                                \
        for (int i = 0; i < NW; i++) w0[i] = wload_##PREFIX(w + i * n + k);                                            \
        for (int j = 0; j < MROWS; j++)                                                                                 \
        {                                                                                                               \
            __m512bh xv = load_bh(x + j * n + k);                                                                       \
            for (int i = 0; i < NW; i++) a[i][j] = _mm512_dpbf16_ps(a[i][j], w0[i], xv);                                \
        }                                                                                                               \
        for (int i = 0; i < NW; i++) w0[i] = wload_##PREFIX(w + i * n + k + 32);                                       \
        for (int j = 0; j < MROWS; j++)                                                                                 \
        {                                                                                                               \
            __m512bh xv = load_bh(x + j * n + k + 32);                                                                  \
            for (int i = 0; i < NW; i++) b[i][j] = _mm512_dpbf16_ps(b[i][j], w0[i], xv);                                \
        }                                                                                                               \
    }                                                                                                                   \
    int64_t end = k;                                                                                                    \
    if (k + 32 <= n)                                                                                                    \
    {                                                                                                                   \
        __m512bh w0[NW];                                                                                                \
        for (int i = 0; i < NW; i++) w0[i] = wload_##PREFIX(w + i * n + k);                                            \
        for (int j = 0; j < MROWS; j++)                                                                                 \
        {                                                                                                               \
            __m512bh xv = load_bh(x + j * n + k);                                                                       \
            for (int i = 0; i < NW; i++) a[i][j] = _mm512_dpbf16_ps(a[i][j], w0[i], xv);                                \
        }                                                                                                               \
        end = k + 32;                                                                                                   \
    }                                                                                                                   \
    for (int j = 0; j < MROWS; j++)                                                                                     \
        for (int i = 0; i < NW; i++)                                                                                    \
        {                                                                                                               \
            float sum = reduce16(_mm512_add_ps(a[i][j], b[i][j]));                                                      \
            for (int64_t kk = end; kk < n; kk++)                                                                        \
                sum = __builtin_fmaf(wvalue_##PREFIX(w[i * n + kk]), bf16_value(x[j * n + kk]), sum);                   \
            y[j * stride + i] = sum;                                                                                    \
        }                                                                                                               \
}

// Three weight rows by m activation rows, 1 <= m <= 8; the rows of a product (see mg_bf16_rows).
#define ROWS(PREFIX, ATTR)                                                                                              \
TILE(PREFIX, ATTR, 4, 1) TILE(PREFIX, ATTR, 3, 1) TILE(PREFIX, ATTR, 3, 2) TILE(PREFIX, ATTR, 3, 3)                     \
TILE(PREFIX, ATTR, 3, 4) TILE(PREFIX, ATTR, 3, 5) TILE(PREFIX, ATTR, 3, 6) TILE(PREFIX, ATTR, 3, 7) TILE(PREFIX, ATTR, 3, 8) \
ATTR static void PREFIX##_tile3(const uint16_t* w, const uint16_t* x, int64_t n, float* y, int64_t stride, int m)       \
{                                                                                                                       \
    switch (m)                                                                                                          \
    {                                                                                                                   \
        case 1: PREFIX##_tile3x1(w, x, n, y, stride); break;                                                            \
        case 2: PREFIX##_tile3x2(w, x, n, y, stride); break;                                                            \
        case 3: PREFIX##_tile3x3(w, x, n, y, stride); break;                                                            \
        case 4: PREFIX##_tile3x4(w, x, n, y, stride); break;                                                            \
        case 5: PREFIX##_tile3x5(w, x, n, y, stride); break;                                                            \
        case 6: PREFIX##_tile3x6(w, x, n, y, stride); break;                                                            \
        case 7: PREFIX##_tile3x7(w, x, n, y, stride); break;                                                            \
        default: PREFIX##_tile3x8(w, x, n, y, stride); break;                                                           \
    }                                                                                                                   \
}                                                                                                                       \
ATTR void mg_##PREFIX##_rows(const uint16_t* w, const uint16_t* x, float* y, int64_t n, int64_t out_features, int rows, \
    int64_t row_start, int64_t row_end, int64_t wide_row)                                                               \
{                                                                                                                       \
    int64_t r = row_start;                                                                                              \
    if (rows >= 2)                                                                                                      \
        for (; r + 3 <= row_end; r += 3)                                                                                \
            for (int m = 0; m < rows; m += 8)                                                                           \
                PREFIX##_tile3(w + r * n, x + m * n, n, y + m * out_features + r, out_features, rows - m < 8 ? rows - m : 8); \
    else if (n > wide_row)                                                                                              \
        for (; r + 4 <= row_end; r += 4) PREFIX##_tile4x1(w + r * n, x, n, y + r, out_features);                        \
    for (; r < row_end; r++)                                                                                            \
        for (int m = 0; m < rows; m++) y[m * out_features + r] = PREFIX##_dot(w + r * n, x + m * n, n);                 \
}

/// y[m * out_features + r] = dot(w[r], x[m]) for bf16 weight rows r in [row_start, row_end) and bf16 activation rows
/// m < rows (n elements each), float32 results. One activation row: rows wider than wide_row four at a time. Two or
/// more: tiles of three weight rows by all activation rows (eight at a time), so each weight row is read from memory
/// once. Every element is bf16_dot's.
ROWS(bf16, BF16DOT512)

/// mg_bf16_rows for float16 weight rows, each weight rounded to bf16 as it is read (f16_to_bf16's values): every element
/// equals mg_bf16_rows' over the rounded rows.
ROWS(f16, F16DOT512)
