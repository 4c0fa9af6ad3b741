/* lionbench's Lion step for fp32 parameters on the CPU: every tensor of a parameter group in one
 * call, one pass over memory (read p, g, m; write p, m).
 *
 * Why C and not torch.compile: the step is bound by memory bandwidth, and with five streams a
 * core does not keep enough cache-line requests in flight to saturate DRAM. Inductor's kernel
 * reached 26 GB/s where torch's fused AdamW (seven streams) reaches 32 on the same machine;
 * prefetching each stream a kilobyte ahead brings this loop to the bandwidth floor. One call per
 * group also replaces the per-tensor launches that dominate small models.
 *
 * The arithmetic is the eager rule of lionbench/optim/lion.py (`_update`) in the same order and
 * fp32 rounding, built with -ffp-contract=off (no fused multiply-add), so both give identical
 * bits (NaN payloads aside):
 *     c = m * b1 + g * (1 - b1)
 *     p = p * (1 - lr * wd) - lr * sign(c)        sign(0) = sign(NaN) = 0, as torch.sign
 *     m = m * b2 + g * (1 - b2)
 * With a bf16 momentum, m is widened to fp32, and the new m rounded to nearest even.
 */
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLOCK 16           /* elements per 64-byte line of fp32 */
#define AHEAD 256          /* prefetch distance: 1 KiB of fp32 ahead in each stream */
#define PARALLEL_MIN 65536 /* below this many elements a second thread costs more than it saves */

typedef struct {
    float keep; /* 1 - lr * wd */
    float lr, b1, nb1, b2, nb2;
} Coef;

static inline float sign_of(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                      /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline void lion_f32(float *restrict p, const float *restrict g, float *restrict m,
                            int64_t i, Coef k) {
    float c = m[i] * k.b1 + g[i] * k.nb1;
    p[i] = p[i] * k.keep - k.lr * sign_of(c);
    m[i] = m[i] * k.b2 + g[i] * k.nb2;
}

static inline void lion_bf16(float *restrict p, const float *restrict g, uint16_t *restrict m,
                             int64_t i, Coef k) {
    float mf = bf16_to_f32(m[i]);
    float c = mf * k.b1 + g[i] * k.nb1;
    p[i] = p[i] * k.keep - k.lr * sign_of(c);
    m[i] = f32_to_bf16(mf * k.b2 + g[i] * k.nb2);
}

static void segment_f32(float *restrict p, const float *restrict g, float *restrict m, int64_t n,
                        Coef k) {
    int64_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        __builtin_prefetch(p + i + AHEAD, 1, 0);
        __builtin_prefetch(g + i + AHEAD, 0, 0);
        __builtin_prefetch(m + i + AHEAD, 1, 0);
        for (int j = 0; j < BLOCK; j++) lion_f32(p, g, m, i + j, k);
    }
    for (; i < n; i++) lion_f32(p, g, m, i, k);
}

static void segment_bf16(float *restrict p, const float *restrict g, uint16_t *restrict m,
                         int64_t n, Coef k) {
    int64_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        __builtin_prefetch(p + i + AHEAD, 1, 0);
        __builtin_prefetch(g + i + AHEAD, 0, 0);
        if ((i & 31) == 0) __builtin_prefetch(m + i + AHEAD, 1, 0); /* 32 bf16 per line */
        for (int j = 0; j < BLOCK; j++) lion_bf16(p, g, m, i + j, k);
    }
    for (; i < n; i++) lion_bf16(p, g, m, i, k);
}

/* One Lion step over `count` tensors of `numel[t]` elements each. Threads split the
 * concatenation of all tensors into equal contiguous ranges, so small and large tensors alike
 * are shared out evenly. `bf16_momentum` says whether m holds bf16 (else fp32). The scalars
 * arrive as fp32, rounded from Python's doubles as torch rounds a scalar operand. */
void lionbench_lion_step(int64_t count, float **p, const float **g, void **m,
                         const int64_t *numel, int bf16_momentum, float lr, float wd, float b1,
                         float nb1, float b2, float nb2, int threads) {
    Coef k;
    float decay = lr * wd;
    k.keep = 1.0f - decay;
    k.lr = lr;
    k.b1 = b1;
    k.nb1 = nb1;
    k.b2 = b2;
    k.nb2 = nb2;
    int64_t total = 0;
    for (int64_t t = 0; t < count; t++) total += numel[t];
    if (threads < 1 || total < PARALLEL_MIN) threads = 1;

#pragma omp parallel num_threads(threads)
    {
        int64_t rank = 0, size = 1;
#ifdef _OPENMP
        rank = omp_get_thread_num();
        size = omp_get_num_threads();
#endif
        /* this thread's range of the concatenation, on line boundaries */
        int64_t lo = (total * rank / size) / BLOCK * BLOCK;
        int64_t hi = rank + 1 == size ? total : (total * (rank + 1) / size) / BLOCK * BLOCK;
        int64_t start = 0; /* offset of tensor t in the concatenation */
        for (int64_t t = 0; t < count && start < hi; start += numel[t], t++) {
            int64_t a = lo > start ? lo - start : 0;
            int64_t b = hi - start < numel[t] ? hi - start : numel[t];
            if (a >= b) continue;
            if (bf16_momentum)
                segment_bf16(p[t] + a, g[t] + a, (uint16_t *)m[t] + a, b - a, k);
            else
                segment_f32(p[t] + a, g[t] + a, (float *)m[t] + a, b - a, k);
        }
    }
}
