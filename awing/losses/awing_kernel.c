/* Adaptive Wing loss (Wang, Bo & Fuxin, ICCV 2019) and its gradient in one pass over memory, optionally weighted
 * by the loss map W * M + 1 (M = (2r+1)^2 dilation of target > threshold) and by one weight per plane.
 *
 * The formulas are those of awing/losses/awing.py (the eager reference implementation, which the tests compare
 * this kernel with): with r = clamp(pred - target, -theta, theta), x = (r / eps)^2, p = alpha - target,
 * a = x^((p - 2) / 2), q = a * x:
 *     grad = c_grad * w * p * a * r / (1 + q),        c_grad = omega * scale / eps^2
 *     loss = c_log * w * ln(1 + q) + grad * (pred - target - r),  c_log = omega * scale
 * (the second term is the linear branch's excess beyond theta). Built and loaded by awing/losses/native.py.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* glibc's vector maths (libmvec) variants, declared as gcc declares them under -ffast-math, so that the element
 * loop vectorises without -ffast-math's other effects (NaN and signed-zero handling stay exact). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
float expf(float) __attribute__((simd("notinbranch")));
float logf(float) __attribute__((simd("notinbranch")));
#endif

typedef struct {
    float theta, inv_eps2, alpha, c_grad, c_log, map_weight;
} Constants;

/* One row of n elements: the gradient into g_out and the per-element loss into e_out. */
static void awing_row(const float *restrict p, const float *restrict y, const unsigned char *restrict mask,
                      float *restrict g_out, float *restrict e_out, int64_t n, const Constants *k, float plane_weight) {
    const float theta = k->theta, inv_eps2 = k->inv_eps2, alpha = k->alpha, c_grad = k->c_grad, c_log = k->c_log;
    const float map_weight = k->map_weight;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
        const float yy = y[j];
        const float d = p[j] - yy;
        const float r = d < -theta ? -theta : (d > theta ? theta : d); /* NaN passes through */
        const float x = r * r * inv_eps2 + FLT_MIN;                       /* kept > 0 for the log */
        const float a = expf(0.5f * (alpha - 2.0f - yy) * logf(x));
        const float one_q = 1.0f + a * x;
        const float w = plane_weight * (1.0f + map_weight * (float)mask[j]);
        const float g = c_grad * w * (alpha - yy) * a * r / one_q;
        g_out[j] = g;
        e_out[j] = c_log * w * logf(one_q) + g * (d - r);
    }
}

/* mask = 1 where the (2 radius + 1)^2 window (clipped to the plane) holds a target value > threshold, else 0.
 * rows: scratch of the plane's size (the mask dilated along each row). */
static void dilated_mask(const float *restrict y, unsigned char *restrict rows, unsigned char *restrict mask,
                         int64_t height, int64_t width, float threshold, int64_t radius) {
    for (int64_t h = 0; h < height; ++h) {
        const float *src = y + h * width;
        unsigned char *fg = mask + h * width; /* the row's threshold, before the dilation */
        unsigned char *dst = rows + h * width;
        for (int64_t j = 0; j < width; ++j) fg[j] = dst[j] = src[j] > threshold;
        for (int64_t s = 1; s <= radius && s < width; ++s) {
            for (int64_t j = 0; j + s < width; ++j) dst[j] |= fg[j + s];
            for (int64_t j = s; j < width; ++j) dst[j] |= fg[j - s];
        }
    }
    for (int64_t h = 0; h < height; ++h) {
        const int64_t lo = h - radius < 0 ? 0 : h - radius, hi = h + radius >= height ? height - 1 : h + radius;
        unsigned char *dst = mask + h * width;
        for (int64_t j = 0; j < width; ++j) dst[j] = rows[lo * width + j];
        for (int64_t t = lo + 1; t <= hi; ++t)
            for (int64_t j = 0; j < width; ++j) dst[j] |= rows[t * width + j];
    }
}

/* pred, target: planes x height x width, contiguous. plane_weight: planes values or NULL. grad, loss_out: outputs
 * of the same size or NULL. plane_loss (double), plane_min, plane_max: planes values each, written per plane (the
 * sum of the plane's loss; its target range, NaN if it holds a NaN), so results do not depend on num_threads.
 * Returns 0, or -1 when scratch memory could not be allocated. */
int awing_forward_f32(const float *pred, const float *target, const float *plane_weight, int64_t planes,
                      int64_t height, int64_t width, float omega, float theta, float epsilon, float alpha,
                      float scale, int use_map, float map_threshold, float map_weight, int64_t radius, float *grad,
                      float *loss_out, double *plane_loss, float *plane_min, float *plane_max, int num_threads) {
    const int64_t plane = height * width;
    const Constants k = {theta, 1.0f / (epsilon * epsilon), alpha, omega * scale / (epsilon * epsilon), omega * scale,
                         use_map ? map_weight : 0.0f};
    int failed = 0;
#pragma omp parallel num_threads(num_threads)
    {
        /* this thread's mask, mask scratch, and gradient and loss rows for the outputs not asked for */
        unsigned char *bytes = calloc(2 * (size_t)plane + 2 * (size_t)width * sizeof(float), 1);
        if (!bytes) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t pl = 0; pl < planes; ++pl) {
            if (!bytes) continue;
            unsigned char *mask = bytes, *scratch = bytes + plane;
            float *g_row = (float *)(bytes + 2 * plane), *e_row = g_row + width;
            const float *p = pred + pl * plane, *y = target + pl * plane;
            const float pw = plane_weight ? plane_weight[pl] : 1.0f;
            if (use_map) dilated_mask(y, scratch, mask, height, width, map_threshold, radius);
            double sum = 0.0;
            float lo = INFINITY, hi = -INFINITY;
            int nan = 0;
            for (int64_t h = 0; h < height; ++h) {
                const int64_t o = h * width;
                float *g = grad ? grad + pl * plane + o : g_row;
                float *e = loss_out ? loss_out + pl * plane + o : e_row;
                awing_row(p + o, y + o, mask + o, g, e, width, &k, pw);
                float acc = 0.0f, row_lo = INFINITY, row_hi = -INFINITY;
                int row_nan = 0;
#pragma omp simd reduction(+ : acc) reduction(min : row_lo) reduction(max : row_hi) reduction(| : row_nan)
                for (int64_t j = 0; j < width; ++j) {
                    const float v = y[o + j];
                    acc += e[j];
                    row_lo = v < row_lo ? v : row_lo;
                    row_hi = v > row_hi ? v : row_hi;
                    row_nan |= v != v;
                }
                sum += acc;
                lo = row_lo < lo ? row_lo : lo;
                hi = row_hi > hi ? row_hi : hi;
                nan |= row_nan;
            }
            if (nan) lo = hi = NAN;
            plane_loss[pl] = sum;
            plane_min[pl] = lo;
            plane_max[pl] = hi;
        }
        free(bytes);
    }
    return failed ? -1 : 0;
}
