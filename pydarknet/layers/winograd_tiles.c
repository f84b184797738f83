/* Winograd's tile transforms for pydarknet.layers.winograd_tiles (see there): compiled on first use with
 * the machine's C compiler, called through ctypes on one band's tiles, shared among `threads` OpenMP
 * threads (torch's own pool: its libgomp is loaded first, with RTLD_GLOBAL). Maps are NHWC float32.
 *
 * A tile is transformed in blocks of L channels: the block's t x t values are loaded, transformed both
 * ways and stored, all in registers and the stack. The matrices are constants of the code and every
 * loop over them is unrolled, so that their zeros and ones cost nothing (F(4x4)'s Bt is 22 of 36
 * non-zero) and each block is a fixed sequence of vector multiply-adds. Same matrices as
 * pydarknet.layers.winograd._MATRICES (tests/layers/test_winograd_tiles.py compares them).
 *
 * Each entry point returns 1 when a thread could not allocate its scratch rows (its tiles are then left
 * unwritten), 2 for an m it does not know, else 0. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Channels per block: one vector register (AVX: 8 floats; SSE, NEON: 4). */
#ifdef __AVX__
#define L 8
#else
#define L 4
#endif
#define T_MAX 6

#if defined(__GNUC__) && !defined(__clang__)
#define UNROLL _Pragma("GCC unroll 8")
#elif defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif
#define INLINE static inline __attribute__((always_inline))
/* GNU C's vector extension: AVX registers where the CPU has them, else split by the compiler. */
typedef float vec __attribute__((vector_size(sizeof(float) * L)));
typedef int ivec __attribute__((vector_size(sizeof(int) * L)));

/* Cross-correlation's F(m x m, 3 x 3) (Lavin & Gray 2015), t = m + 2: Bt (t x t), At (m x t). */
static const float BT2[4 * 4] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
static const float AT2[2 * 4] = {1, 1, 1, 0, 0, 1, -1, -1};
static const float BT4[6 * 6] = {4, 0, -5, 0, 1, 0, 0, -4, -4, 1, 1, 0, 0, 4, -4, -1, 1, 0,
                                 0, -2, -1, 2, 1, 0, 0, 2, -1, -2, 1, 0, 0, 4, 0, -5, 0, 1};
static const float AT4[4 * 6] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 0, 0, 1, 1, 4, 4, 0, 0, 1, -1, 8, -8, 1};

/* out[i] = sum_a mat[i, a] in[a] for rows i < r (a < t), the terms of zero coefficients left out; in and
 * out are strided by in_step and out_step blocks. */
INLINE void rows(const float *mat, int r, int t, const vec *in, int in_step, vec *out, int out_step) {
    UNROLL for (int i = 0; i < r; i++) {
        vec acc = {0};
        int started = 0;
        UNROLL for (int a = 0; a < t; a++) {
            const float coef = mat[i * t + a];
            if (coef == 0) continue;
            acc = started ? acc + coef * in[a * in_step] : coef * in[a * in_step];
            started = 1;
        }
        out[i * out_step] = acc;
    }
}

/* The block of n <= L floats at p, zeros after them. */
INLINE vec load(const float *p, int n) {
    vec x = {0};
    if (n == L) {
        memcpy(&x, p, sizeof x);
    } else {
        float part[L] = {0};
        memcpy(part, p, sizeof(float) * n);
        memcpy(&x, part, sizeof x);
    }
    return x;
}

INLINE void store(float *p, vec x, int n) {
    memcpy(p, &x, sizeof(float) * n);
}

/* Bt d B of channels [cb, cb + n) of one tile (n <= L) from its t^2 pixels' rows `src` (zeros for the
 * padding) into the tile's t^2 rows of v (stride c). */
INLINE void input_block(const float **src, int cb, int n, const float *bt, int t, float *v, int c) {
    vec d[T_MAX * T_MAX], r[T_MAX * T_MAX], u[T_MAX * T_MAX];
    UNROLL for (int p = 0; p < t * t; p++) d[p] = load(src[p] + cb, n);
    UNROLL for (int b = 0; b < t; b++) rows(bt, t, t, d + b, t, r + b, t); /* r = Bt d, column by column */
    UNROLL for (int i = 0; i < t; i++) rows(bt, t, t, r + i * t, 1, u + i * t, 1); /* u = r B, row by row */
    UNROLL for (int p = 0; p < t * t; p++) store(v + (size_t)p * c + cb, u[p], n);
}

INLINE void input_tile(const float *x, int h, int w, int c, size_t ldx, const float *zeros, const float *bt, int t,
                       int y0, int x0, float *v) {
    const float *src[T_MAX * T_MAX];
    UNROLL for (int a = 0; a < t; a++)
        UNROLL for (int b = 0; b < t; b++) {
            const int y = y0 + a, xx = x0 + b;
            src[a * t + b] = y >= 0 && y < h && xx >= 0 && xx < w ? x + ((size_t)y * w + xx) * ldx : zeros;
        }
    int cb = 0;
    for (; cb + L <= c; cb += L) input_block(src, cb, L, bt, t, v, c);
    if (cb < c) input_block(src, cb, c - cb, bt, t, v, c);
}

/* v[tile, i t + j, :] = (Bt d B)[i, j] for the `tiles` tiles of the band of tile rows from first_row of
 * the h x w x c map x padded by 1 (zeros outside it); tile = row within the band x tiles per row + column.
 * x's pixels are ldx >= c floats apart (a channel slice of a wider map: a route's group). */
int input_tiles(const float *restrict x, int h, int w, int c, int ldx, int m, int first_row, int tiles,
                float *restrict v, int threads) {
    if (m != 2 && m != 4) return 2;
    const int t = m + 2, tw = (w + m - 1) / m;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *zeros = calloc(c, sizeof(float));
        failed = !zeros;
#pragma omp for schedule(static)
        for (int tile = 0; tile < tiles; tile++) {
            if (failed) continue;
            const int y0 = (first_row + tile / tw) * m - 1, x0 = (tile % tw) * m - 1;
            float *out = v + (size_t)tile * t * t * c;
            if (m == 4)
                input_tile(x, h, w, c, ldx, zeros, BT4, 6, y0, x0, out);
            else
                input_tile(x, h, w, c, ldx, zeros, BT2, 4, y0, x0, out);
        }
        free(zeros);
    }
    return failed;
}

/* At M A of channels [cb, cb + n) of one tile's products (t^2 rows of stride k), each value v written as
 * v if v > 0 else slope v into the tile's m^2 pixels' rows `dst`. */
INLINE void output_block(const float *p, int k, int cb, int n, const float *at, int m, float slope, float **dst) {
    const int t = m + 2;
    vec s[T_MAX * T_MAX], r[T_MAX * T_MAX], o[T_MAX * T_MAX];
    UNROLL for (int q = 0; q < t * t; q++) s[q] = load(p + (size_t)q * k + cb, n);
    UNROLL for (int b = 0; b < t; b++) rows(at, m, t, s + b, t, r + b, t); /* r = At M: m x t */
    UNROLL for (int i = 0; i < m; i++) rows(at, m, t, r + i * t, 1, o + i * m, 1); /* o = r A: m x m */
    UNROLL for (int q = 0; q < m * m; q++) {
        const ivec positive = o[q] > 0; /* lanes of all ones where o > 0: v there, slope v elsewhere */
        store(dst[q] + cb, (vec)((positive & (ivec)o[q]) | (~positive & (ivec)(slope * o[q]))), n);
    }
}

INLINE void output_tile(const float *p, int k, const float *at, int m, float slope, float *y, int h, int w, int y0,
                        int x0, float *scratch) {
    float *dst[T_MAX * T_MAX];
    UNROLL for (int i = 0; i < m; i++)
        UNROLL for (int j = 0; j < m; j++)
            dst[i * m + j] = y0 + i < h && x0 + j < w ? y + ((size_t)(y0 + i) * w + x0 + j) * k : scratch;
    int cb = 0;
    for (; cb + L <= k; cb += L) output_block(p, k, cb, L, at, m, slope, dst);
    if (cb < k) output_block(p, k, cb, k - cb, at, m, slope, dst);
}

/* y's m x m tiles (`tiles` of them) of the band from first_row = At M A of products[tile] ((t^2, k) each),
 * cropped to y's h x w x k, each value v written as v if v > 0 else slope v. */
int output_tiles(const float *restrict products, int k, int m, int first_row, int tiles, float slope,
                 float *restrict y, int h, int w, int threads) {
    if (m != 2 && m != 4) return 2;
    const int t = m + 2, tw = (w + m - 1) / m;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *scratch = malloc(sizeof(float) * k); /* where the cropped pixels go */
        failed = !scratch;
#pragma omp for schedule(static)
        for (int tile = 0; tile < tiles; tile++) {
            if (failed) continue;
            const int y0 = (first_row + tile / tw) * m, x0 = (tile % tw) * m;
            const float *p = products + (size_t)tile * t * t * k;
            if (m == 4)
                output_tile(p, k, AT4, 4, slope, y, h, w, y0, x0, scratch);
            else
                output_tile(p, k, AT2, 2, slope, y, h, w, y0, x0, scratch);
        }
        free(scratch);
    }
    return failed;
}
