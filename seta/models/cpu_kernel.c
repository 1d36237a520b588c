/* The layer's no-grad block delta in one call, fp32, CPU (seta/models/cpu_kernel.py builds and calls it):

       y[n, rows[i]*b + j] += w[i, n / T] * sum_c x[n, cols[i]*b + c] * bt[i, c, j]

   for every routed block i < k and token n < N (T tokens per example, N / T examples), i.e. what
   seta.core.blocks.delta_add_ computes with gather -> bmm -> scale -> index_add (its reference).
   y: (N, d_out), x: (N, d_in), bt: (k, b, b) blocks transposed, all contiguous; rows, cols: (k,);
   wt: (k, N / T) per-example weights, or NULL for all ones. b divides d_out and d_in.
   Order of the sums as in the reference: each block's product is summed over c first, then scaled,
   then added into y, block after block. Four tokens at a time share each load of bt.

   What stays fixed for a route (the blocks and the layer's shape) is one struct, bound once; a call
   passes only y, x, the weights and the token counts (fewer ctypes conversions per decoding step).
   Block sizes 16, 32 and 64 get their own copy of the loop, b a compile-time constant there, so the
   compiler keeps the accumulators in registers; any other b runs the generic loop. */
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SETA_NO_CLONES)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))  /* picked at load time */
#else
#define CLONES
#endif

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

typedef struct {
    const float *bt;      /* (k, b, b) blocks transposed */
    const int64_t *rows;  /* (k,) */
    const int64_t *cols;  /* (k,) */
    int64_t k, b, d_out, d_in;
} seta_blocks;

INLINE void add_scaled(float *ys, const float *acc, float w, int64_t b) {
    for (int64_t j = 0; j < b; j++) ys[j] += w * acc[j];
}

INLINE void delta(const seta_blocks *p, float *y, const float *x, const float *wt, int64_t N, int64_t T,
                  const int64_t b) {
    const int64_t k = p->k, d_out = p->d_out, d_in = p->d_in, examples = N / T;
    float a0[b], a1[b], a2[b], a3[b];  /* (b,) products of one block for four tokens */
    for (int64_t i = 0; i < k; i++) {
        const float *Bi = p->bt + i * b * b;  /* (b, b): Bi[c * b + j] */
        const int64_t in0 = p->cols[i] * b, out0 = p->rows[i] * b;
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

CLONES
void seta_delta_add_f32(const seta_blocks *p, float *y, const float *x, const float *wt, int64_t N, int64_t T) {
    switch (p->b) {  /* the same loop, b a constant in the common block sizes */
    case 16: delta(p, y, x, wt, N, T, 16); break;
    case 32: delta(p, y, x, wt, N, T, 32); break;
    case 64: delta(p, y, x, wt, N, T, 64); break;
    default: delta(p, y, x, wt, N, T, p->b);
    }
}
