/* The layer's no-grad block delta in one call, fp32, CPU (seta/models/cpu_kernel.py builds and calls it):

       y[n, rows[i]*b + j] += w[i, n / T] * sum_c x[n, cols[i]*b + c] * bt[i, c, j]

   for every routed block i < k and token n < N (T tokens per example, N / T examples), i.e. what
   seta.core.blocks.delta_add_ computes with gather -> bmm -> scale -> index_add (its reference).
   y: (N, d_out), x: (N, d_in), bt: (k, b, b) blocks transposed, all contiguous; rows, cols: (k,);
   wt: (k, N / T) per-example weights, or NULL for all ones. b divides d_out and d_in.
   Order of the sums as in the reference: each block's product is summed over c first, then scaled,
   then added into y, block after block. Four tokens at a time share each load of bt. */
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SETA_NO_CLONES)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))  /* picked at load time */
#else
#define CLONES
#endif

static void add_scaled(float *ys, const float *acc, float w, int64_t b) {
    for (int64_t j = 0; j < b; j++) ys[j] += w * acc[j];
}

CLONES
void seta_delta_add_f32(float *y, const float *x, const float *bt, const int64_t *rows, const int64_t *cols,
                        const float *wt, int64_t k, int64_t N, int64_t T, int64_t b, int64_t d_out, int64_t d_in) {
    float a0[b], a1[b], a2[b], a3[b];  /* (b,) products of one block for four tokens */
    const int64_t examples = N / T;
    for (int64_t i = 0; i < k; i++) {
        const float *Bi = bt + i * b * b;  /* (b, b): Bi[c * b + j] */
        const int64_t in0 = cols[i] * b, out0 = rows[i] * b;
        int64_t n = 0;
        for (; n + 4 <= N; n += 4) {
            const float *x0 = x + n * d_in + in0, *x1 = x0 + d_in, *x2 = x1 + d_in, *x3 = x2 + d_in;
            memset(a0, 0, b * sizeof(float));
            memset(a1, 0, b * sizeof(float));
            memset(a2, 0, b * sizeof(float));
            memset(a3, 0, b * sizeof(float));
            for (int64_t c = 0; c < b; c++) {
                const float v0 = x0[c], v1 = x1[c], v2 = x2[c], v3 = x3[c];
                const float *Bc = Bi + c * b;
                for (int64_t j = 0; j < b; j++) {
                    const float bj = Bc[j];
                    a0[j] += v0 * bj;
                    a1[j] += v1 * bj;
                    a2[j] += v2 * bj;
                    a3[j] += v3 * bj;
                }
            }
            const float *acc[4] = {a0, a1, a2, a3};
            for (int64_t r = 0; r < 4; r++)
                add_scaled(y + (n + r) * d_out + out0, acc[r], wt ? wt[i * examples + (n + r) / T] : 1.f, b);
        }
        for (; n < N; n++) {  /* the last N mod 4 tokens */
            const float *xs = x + n * d_in + in0;
            memset(a0, 0, b * sizeof(float));
            for (int64_t c = 0; c < b; c++) {
                const float v = xs[c];
                const float *Bc = Bi + c * b;
                for (int64_t j = 0; j < b; j++) a0[j] += v * Bc[j];
            }
            add_scaled(y + n * d_out + out0, a0, wt ? wt[i * examples + n / T] : 1.f, b);
        }
    }
}
