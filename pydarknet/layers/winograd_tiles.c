/* Winograd's tile transforms for pydarknet.layers.winograd_tiles (see there): compiled on first use with
 * the machine's C compiler, called through ctypes on one band's tiles, shared among `threads` OpenMP
 * threads (torch's own pool: its libgomp is loaded first, with RTLD_GLOBAL). Maps are NHWC float32:
 * channels are the innermost loop, contiguous, which the compiler vectorises. Each returns 1 when a
 * thread could not allocate its scratch tile (its tiles are then left unwritten), else 0. */
#include <stdlib.h>
#include <string.h>

/* y[0:n] += a x[0:n], the one inner loop of both transforms (vectorised over channels). */
static inline void axpy(float *restrict y, const float *restrict x, float a, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* v[tile, i t + j, :] = (Bt d B)[i, j] for the `tiles` tiles of the band of tile rows from first_row of
 * the h x w x c map x padded by 1 (zeros outside it); tile = row within the band x tiles per row + column. */
int input_tiles(const float *restrict x, int h, int w, int c, const float *restrict bt, int t, int first_row,
                int tiles, float *restrict v, int threads) {
    const int m = t - 2, tw = (w + m - 1) / m;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *restrict rowwise = malloc(sizeof(float) * t * t * c); /* [i, b] = sum_a Bt[i, a] d[a, b] */
        failed = !rowwise;
#pragma omp for schedule(static)
        for (int tile = 0; tile < tiles; tile++) {
            if (failed) continue;
            const int y0 = (first_row + tile / tw) * m - 1, x0 = (tile % tw) * m - 1;
            const int b0 = x0 < 0 ? -x0 : 0, b1 = w - x0 < t ? w - x0 : t;
            memset(rowwise, 0, sizeof(float) * t * t * c);
            for (int i = 0; i < t; i++)
                for (int a = 0; a < t; a++) {
                    const float coef = bt[i * t + a];
                    if (coef == 0 || y0 + a < 0 || y0 + a >= h) continue;
                    for (int b = b0; b < b1; b++)
                        axpy(rowwise + (size_t)(i * t + b) * c, x + ((size_t)(y0 + a) * w + x0 + b) * c, coef, c);
                }
            for (int i = 0; i < t; i++)
                for (int j = 0; j < t; j++) {
                    float *restrict out = v + ((size_t)tile * t * t + i * t + j) * c;
                    memset(out, 0, sizeof(float) * c);
                    for (int b = 0; b < t; b++)
                        if (bt[j * t + b] != 0) axpy(out, rowwise + (size_t)(i * t + b) * c, bt[j * t + b], c);
                }
        }
        free(rowwise);
    }
    return failed;
}

/* y's m x m tiles (`tiles` of them) of the band from first_row = At M A of products[tile] ((t^2, k) each),
 * cropped to y's h x w x k, each value v written as v if v > 0 else slope v. */
int output_tiles(const float *restrict products, int k, const float *restrict at, int m, int t, int first_row,
                 int tiles, float slope, float *restrict y, int h, int w, int threads) {
    const int tw = (w + m - 1) / m;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *restrict rowwise = malloc(sizeof(float) * m * t * k); /* [i, b] = sum_a At[i, a] M[a, b] */
        float *restrict value = malloc(sizeof(float) * k);
        failed = !rowwise || !value;
#pragma omp for schedule(static)
        for (int tile = 0; tile < tiles; tile++) {
            if (failed) continue;
            const int y0 = (first_row + tile / tw) * m, x0 = (tile % tw) * m;
            const float *restrict tile_products = products + (size_t)tile * t * t * k;
            memset(rowwise, 0, sizeof(float) * m * t * k);
            for (int i = 0; i < m; i++)
                for (int a = 0; a < t; a++) {
                    const float coef = at[i * t + a];
                    if (coef == 0) continue;
                    for (int b = 0; b < t; b++)
                        axpy(rowwise + (size_t)(i * t + b) * k, tile_products + (size_t)(a * t + b) * k, coef, k);
                }
            for (int i = 0; i < m && y0 + i < h; i++)
                for (int j = 0; j < m && x0 + j < w; j++) {
                    memset(value, 0, sizeof(float) * k);
                    for (int b = 0; b < t; b++)
                        if (at[j * t + b] != 0) axpy(value, rowwise + (size_t)(i * t + b) * k, at[j * t + b], k);
                    float *restrict out = y + ((size_t)(y0 + i) * w + x0 + j) * k;
                    for (int ch = 0; ch < k; ch++) out[ch] = value[ch] > 0 ? value[ch] : slope * value[ch];
                }
        }
        free(rowwise);
        free(value);
    }
    return failed;
}
