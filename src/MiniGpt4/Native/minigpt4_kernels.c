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
    return f;
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

BF16DOT512 static inline float bf16_finish(__m512 a, __m512 b, const uint16_t* w, const uint16_t* x, int64_t k, int64_t n)
{
    float sum = reduce16(_mm512_add_ps(a, b));
    for (; k < n; k++) sum = __builtin_fmaf(bf16_value(w[k]), bf16_value(x[k]), sum);
    return sum;
}

BF16DOT512 static float bf16_dot(const uint16_t* w, const uint16_t* x, int64_t n)
{
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 64 <= n; k += 64)
    {
        a = _mm512_dpbf16_ps(a, load_bh(w + k), load_bh(x + k));
        b = _mm512_dpbf16_ps(b, load_bh(w + k + 32), load_bh(x + k + 32));
    }
    if (k + 32 <= n) { a = _mm512_dpbf16_ps(a, load_bh(w + k), load_bh(x + k)); k += 32; }
    return bf16_finish(a, b, w, x, k, n);
}

// NW consecutive weight rows with MROWS activation rows (n apart): y[j * stride + i] = dot(w_i, x_j). Four weight rows
// by one activation row is the one-row product of rows read four at a time (the activation loaded once for the four);
// three weight rows by every activation row (up to eight) is the product of several rows, which then reads each
// weight row from memory once.
#define BF16_TILE(NW, MROWS)                                                                                            \
BF16DOT512 static void bf16_tile##NW##x##MROWS(const uint16_t* w, const uint16_t* x, int64_t n, float* y, int64_t stride) \
{                                                                                                                       \
    __m512 a[NW][MROWS], b[NW][MROWS];                                                                                  \
    for (int i = 0; i < NW; i++) for (int j = 0; j < MROWS; j++) a[i][j] = b[i][j] = _mm512_setzero_ps();               \
    int64_t k = 0;                                                                                                      \
    for (; k + 64 <= n; k += 64)                                                                                        \
    {                                                                                                                   \
        __m512bh w0[NW];                                                                                                \
        for (int i = 0; i < NW; i++) w0[i] = load_bh(w + i * n + k);                                                    \
        for (int j = 0; j < MROWS; j++)                                                                                 \
        {                                                                                                               \
            __m512bh xv = load_bh(x + j * n + k);                                                                       \
            for (int i = 0; i < NW; i++) a[i][j] = _mm512_dpbf16_ps(a[i][j], w0[i], xv);                                \
        }                                                                                                               \
        for (int i = 0; i < NW; i++) w0[i] = load_bh(w + i * n + k + 32);                                               \
        for (int j = 0; j < MROWS; j++)                                                                                 \
        {                                                                                                               \
            __m512bh xv = load_bh(x + j * n + k + 32);                                                                  \
            for (int i = 0; i < NW; i++) b[i][j] = _mm512_dpbf16_ps(b[i][j], w0[i], xv);                                \
        }                                                                                                               \
    }                                                                                                                   \
    int64_t end = k;                                                                                                    \
    if (k + 32 <= n)                                                                                                    \
    {                                                                                                                   \
        for (int j = 0; j < MROWS; j++)                                                                                 \
        {                                                                                                               \
            __m512bh xv = load_bh(x + j * n + k);                                                                       \
            for (int i = 0; i < NW; i++) a[i][j] = _mm512_dpbf16_ps(a[i][j], load_bh(w + i * n + k), xv);               \
        }                                                                                                               \
        end = k + 32;                                                                                                   \
    }                                                                                                                   \
    for (int j = 0; j < MROWS; j++)                                                                                     \
        for (int i = 0; i < NW; i++) y[j * stride + i] = bf16_finish(a[i][j], b[i][j], w + i * n, x + j * n, end, n);   \
}
BF16_TILE(4, 1)
BF16_TILE(3, 1)
BF16_TILE(3, 2)
BF16_TILE(3, 3)
BF16_TILE(3, 4)
BF16_TILE(3, 5)
BF16_TILE(3, 6)
BF16_TILE(3, 7)
BF16_TILE(3, 8)

// Three weight rows by m activation rows, 1 <= m <= 8.
BF16DOT512 static void bf16_tile3(const uint16_t* w, const uint16_t* x, int64_t n, float* y, int64_t stride, int m)
{
    switch (m)
    {
        case 1: bf16_tile3x1(w, x, n, y, stride); break;
        case 2: bf16_tile3x2(w, x, n, y, stride); break;
        case 3: bf16_tile3x3(w, x, n, y, stride); break;
        case 4: bf16_tile3x4(w, x, n, y, stride); break;
        case 5: bf16_tile3x5(w, x, n, y, stride); break;
        case 6: bf16_tile3x6(w, x, n, y, stride); break;
        case 7: bf16_tile3x7(w, x, n, y, stride); break;
        default: bf16_tile3x8(w, x, n, y, stride); break;
    }
}

/// y[m * out_features + r] = dot(w[r], x[m]) for bf16 weight rows r in [row_start, row_end) and bf16 activation rows
/// m < rows (n elements each), float32 results. One activation row: rows wider than wide_row four at a time. Two or
/// more: tiles of three weight rows by all activation rows (eight at a time), so each weight row is read from memory
/// once. Every element is bf16_dot's.
BF16DOT512 void mg_bf16_rows(const uint16_t* w, const uint16_t* x, float* y, int64_t n, int64_t out_features, int rows,
    int64_t row_start, int64_t row_end, int64_t wide_row)
{
    int64_t r = row_start;
    if (rows >= 2)
        for (; r + 3 <= row_end; r += 3)
            for (int m = 0; m < rows; m += 8)
                bf16_tile3(w + r * n, x + m * n, n, y + m * out_features + r, out_features, rows - m < 8 ? rows - m : 8);
    else if (n > wide_row)
        for (; r + 4 <= row_end; r += 4) bf16_tile4x1(w + r * n, x, n, y + r, out_features);
    for (; r < row_end; r++)
        for (int m = 0; m < rows; m++) y[m * out_features + r] = bf16_dot(w + r * n, x + m * n, n);
}
