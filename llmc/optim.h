// CPU reference optimizer updates. Each formula is written once here; CUDA kernels mirror it.
#ifndef LLMC_OPTIM_H
#define LLMC_OPTIM_H

#include <stddef.h>
#include <math.h>

#include "utils.h"

// AdamW with decoupled weight decay on n elements; t is the 1-based step.
//   g = grad * grad_scale
//   m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
//   mhat = m / (1 - beta1^t);   vhat = v / (1 - beta2^t)
//   param -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * param)
// gcc vectorizes this loop only with -fno-math-errno (sqrtf otherwise may set errno).
static inline void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
                                float beta2, float eps, float weight_decay, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t);
    float bc2 = 1.0f - powf(beta2, (float)t);
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1;
        float vhat = vi / bc2;
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
    }
}

#endif // LLMC_OPTIM_H
