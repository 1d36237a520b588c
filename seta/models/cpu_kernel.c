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
   Block sizes 16, 32 and 64 run `delta16` (GCC and clang vector types, b a compile-time constant):
   sixteen output columns of four tokens accumulate in eight vector registers; any other b, or
   another compiler, runs the generic loop `delta` (the same sums in the same order). */
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


#if defined(__GNUC__) && !defined(SETA_NO_VECTORS)  /* GCC and clang: vector types, lowered to what each clone's ISA has */
#define SETA_VECTORS 1
#pragma GCC diagnostic ignored "-Wpsabi"  /* the helpers are inlined: no vector crosses an ABI boundary */
typedef float v8f __attribute__((vector_size(32)));  /* 8 floats */

INLINE v8f load8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }  /* unaligned */
INLINE void add8(float *p, v8f v) { v8f t = load8(p) + v; memcpy(p, &t, sizeof t); }

/* The same sums as `delta`, in the same order (bit-identical results), for b a multiple of 16:
   each block's output columns in chunks of 16 (two vectors of 8), four tokens at a time, so the
   eight accumulators stay in registers (`delta`'s arrays live in memory: 3-10x slower, BENCHMARKS.md
   §7.6); a token's example index is divided out once per block, not per column. */
INLINE void delta16(const seta_blocks *p, float *y, const float *x, const float *wt, int64_t N, int64_t T,
                    const int64_t b) {
    const int64_t k = p->k, d_out = p->d_out, d_in = p->d_in, examples = N / T;
    for (int64_t i = 0; i < k; i++) {
        const float *Bi = p->bt + i * b * b, *wi = wt ? wt + i * examples : 0;
        const int64_t in0 = p->cols[i] * b, out0 = p->rows[i] * b;
        int64_t n = 0;
        for (; n + 4 <= N; n += 4) {
            const float *x0 = x + n * d_in + in0, *x1 = x0 + d_in, *x2 = x1 + d_in, *x3 = x2 + d_in;
            float w[4] = {1.f, 1.f, 1.f, 1.f};
            if (wi)
                for (int r = 0; r < 4; r++) w[r] = wi[T == 1 ? n + r : (n + r) / T];
            for (int64_t j0 = 0; j0 < b; j0 += 16) {
                v8f a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};
                for (int64_t c = 0; c < b; c++) {
                    const float *Bc = Bi + c * b + j0;
                    const v8f lo = load8(Bc), hi = load8(Bc + 8);
                    const float v0 = x0[c], v1 = x1[c], v2 = x2[c], v3 = x3[c];
                    a0 += v0 * lo; b0 += v0 * hi;
                    a1 += v1 * lo; b1 += v1 * hi;
                    a2 += v2 * lo; b2 += v2 * hi;
                    a3 += v3 * lo; b3 += v3 * hi;
                }
                float *y0 = y + n * d_out + out0 + j0, *y1 = y0 + d_out, *y2 = y1 + d_out, *y3 = y2 + d_out;
                add8(y0, w[0] * a0); add8(y0 + 8, w[0] * b0);
                add8(y1, w[1] * a1); add8(y1 + 8, w[1] * b1);
                add8(y2, w[2] * a2); add8(y2 + 8, w[2] * b2);
                add8(y3, w[3] * a3); add8(y3 + 8, w[3] * b3);
            }
        }
        for (; n < N; n++) {  /* the last N mod 4 tokens */
            const float *xs = x + n * d_in + in0;
            const float w = wi ? wi[n / T] : 1.f;
            for (int64_t j0 = 0; j0 < b; j0 += 16) {
                v8f a = {0}, h = {0};
                for (int64_t c = 0; c < b; c++) {
                    const float *Bc = Bi + c * b + j0;
                    a += xs[c] * load8(Bc); h += xs[c] * load8(Bc + 8);
                }
                float *ys = y + n * d_out + out0 + j0;
                add8(ys, w * a); add8(ys + 8, w * h);
            }
        }
    }
}
#endif

CLONES
void seta_delta_add_f32(const seta_blocks *p, float *y, const float *x, const float *wt, int64_t N, int64_t T) {
#ifdef SETA_VECTORS
#define CONSTANT_B_LOOP delta16
#else
#define CONSTANT_B_LOOP delta
#endif
    switch (p->b) {  /* b a compile-time constant in the common block sizes */
    case 16: CONSTANT_B_LOOP(p, y, x, wt, N, T, 16); break;
    case 32: CONSTANT_B_LOOP(p, y, x, wt, N, T, 32); break;
    case 64: CONSTANT_B_LOOP(p, y, x, wt, N, T, 64); break;
    default: delta(p, y, x, wt, N, T, p->b);
    }
}
