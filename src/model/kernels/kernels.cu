// tunelab's fused CUDA kernels (f32). Compiled at run time with NVRTC (src/model/kernels/cuda.rs);
// `scripts/cuda-toolchain.sh check` compiles this file with nvcc, no GPU needed. Each kernel does
// the arithmetic of its CPU twin in the sibling .rs file.

#define NEG_INF __int_as_float(0xff800000)

// Sum / max of v over one warp; every lane gets it.
__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
__device__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* shared) {
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = (int)threadIdx.x < warps ? shared[threadIdx.x] : 0.0f;
    if (warp == 0) {
        v = warp_sum(v);
        if (lane == 0) shared[32] = v;
    }
    __syncthreads();
    return shared[32];
}

// Max of v over the block, as block_sum.
__device__ float block_max(float v, float* shared) {
    v = warp_max(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = (int)threadIdx.x < warps ? shared[threadIdx.x] : NEG_INF;
    if (warp == 0) {
        v = warp_max(v);
        if (lane == 0) shared[32] = v;
    }
    __syncthreads();
    return shared[32];
}

// Element i of the row being normalised: x alone, or x + r for the "add & norm" kernels
// (r null for the plain ones; the branch is the same for every thread of a launch).
__device__ __forceinline__ float row_at(const float* x, const float* r, int i) {
    return r ? x[i] + r[i] : x[i];
}

// Mean and 1/sqrt(var + eps) of one row (x, or x + r), two passes (as the CPU kernel).
__device__ void moments(const float* x, const float* r, int d, float eps, float* shared, float* mean,
                        float* rstd) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += row_at(x, r, i);
    const float m = block_sum(s, shared) / (float)d;
    float q = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) { const float c = row_at(x, r, i) - m; q += c * c; }
    *mean = m;
    *rstd = 1.0f / sqrtf(block_sum(q, shared) / (float)d + eps);
}

// One block per row: y = (s - mean) * rstd * w + b with s = x (r null) or x + r.
__device__ void layer_norm_row(const float* x, const float* r, const float* w, const float* b, float* y,
                               const int d, const float eps) {
    __shared__ float shared[33];
    const size_t row = blockIdx.x;
    const float* xr = x + row * d;
    const float* rr = r ? r + row * d : r;
    float* yr = y + row * d;
    float mean, rstd;
    moments(xr, rr, d, eps, shared, &mean, &rstd);
    for (int i = threadIdx.x; i < d; i += blockDim.x) yr[i] = (row_at(xr, rr, i) - mean) * rstd * w[i] + b[i];
}

extern "C" __global__ void layer_norm_f32(const float* x, const float* w, const float* b, float* y,
                                          const int d, const float eps) {
    layer_norm_row(x, nullptr, w, b, y, d, eps);
}

// "Add & norm": layer_norm(x + r); the sum is never stored.
extern "C" __global__ void add_layer_norm_f32(const float* x, const float* r, const float* w, const float* b,
                                              float* y, const int d, const float eps) {
    layer_norm_row(x, r, w, b, y, d, eps);
}

// out = [ds | dw | db] (dw, db zeroed by the caller), s = x (r null) or x + r. Each block
// takes rows_per_block rows, keeps its partial dw/db per column in registers and adds them once.
__device__ void layer_norm_bwd_rows(const float* x, const float* r, const float* w, const float* dy,
                                    float* out, const int rows, const int d, const float eps,
                                    const int rows_per_block) {
    __shared__ float shared[33];
    float* dw = out + (size_t)rows * d;
    float* db = dw + d;
    float aw[8], ab[8];
    for (int k = 0; k < 8; ++k) { aw[k] = 0.0f; ab[k] = 0.0f; }
    const int first = blockIdx.x * rows_per_block;
    const int last = min(rows, first + rows_per_block);
    for (int row = first; row < last; ++row) {
        const float* xr = x + (size_t)row * d;
        const float* rr = r ? r + (size_t)row * d : r;
        const float* gr = dy + (size_t)row * d;
        float* dxr = out + (size_t)row * d;
        float mean, rstd;
        moments(xr, rr, d, eps, shared, &mean, &rstd);
        float sg = 0.0f, sgx = 0.0f;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            const float h = (row_at(xr, rr, i) - mean) * rstd;
            const float g = gr[i] * w[i];
            sg += g;
            sgx += g * h;
        }
        const float mean_g = block_sum(sg, shared) / (float)d;
        const float mean_gx = block_sum(sgx, shared) / (float)d;
        int k = 0;
        for (int i = threadIdx.x; i < d; i += blockDim.x, ++k) {
            const float h = (row_at(xr, rr, i) - mean) * rstd;
            dxr[i] = rstd * (gr[i] * w[i] - mean_g - h * mean_gx);
            aw[k] += gr[i] * h;
            ab[k] += gr[i];
        }
    }
    int k = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x, ++k) {
        atomicAdd(dw + i, aw[k]);
        atomicAdd(db + i, ab[k]);
    }
}

extern "C" __global__ void layer_norm_bwd_f32(const float* x, const float* w, const float* dy, float* out,
                                              const int rows, const int d, const float eps,
                                              const int rows_per_block) {
    layer_norm_bwd_rows(x, nullptr, w, dy, out, rows, d, eps, rows_per_block);
}

extern "C" __global__ void add_layer_norm_bwd_f32(const float* x, const float* r, const float* w,
                                                  const float* dy, float* out, const int rows, const int d,
                                                  const float eps, const int rows_per_block) {
    layer_norm_bwd_rows(x, r, w, dy, out, rows, d, eps, rows_per_block);
}

// Dropout's scaled keep-mask: SplitMix64(seed ^ i·golden), kept when its top 32 bits reach
// threshold (layers/dropout.rs computes the same bits on the CPU).
extern "C" __global__ void dropout_mask_f32(const unsigned long long n, const unsigned long long seed,
                                            const unsigned int threshold, const float scale, float* out) {
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        unsigned long long z = seed ^ (i * 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z = z ^ (z >> 31);
        out[i] = (unsigned int)(z >> 32) >= threshold ? scale : 0.0f;
    }
}

// Adam / AdamW: new parameter and moments (mode 1: decoupled decay, 2: L2 into the gradient).
extern "C" __global__ void adam_f32(const unsigned int n, const float* p, const float* g, const float* m,
                                    const float* v, float* np, float* nm, float* nv, const float lr,
                                    const float b1, const float b2, const float one_b1, const float one_b2,
                                    const float eps, const float decay, const float wd, const int mode,
                                    const float corr1, const float corr2, const int first) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        float pi = p[i], gi = g[i];
        if (mode == 1) pi = pi * decay;
        else if (mode == 2) gi = gi + pi * wd;
        const float mi = (first ? 0.0f : m[i]) * b1 + gi * one_b1;
        const float vi = (first ? 0.0f : v[i]) * b2 + gi * gi * one_b2;
        const float denom = sqrtf(vi * corr2) + eps;
        np[i] = pi - (mi * corr1) / denom * lr;
        nm[i] = mi;
        nv[i] = vi;
    }
}

// ---- Attention softmax: y = softmax(x * scale + bias) over rows of k, one warp per row. ----
// The bias is read through a broadcast layout: x's leading dims padded to [d0, d1, d2] (only d1
// and d2 are needed), the bias's element strides bs0..bs3 (0 along broadcast dims) from bstart.
extern "C" __global__ void softmax_f32(const float* x, const float* bias, float* y, const int rows, const int k,
                                       const float scale, const int has_bias, const int d1, const int d2,
                                       const long long bstart, const long long bs0, const long long bs1,
                                       const long long bs2, const long long bs3) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;  // the whole warp leaves together
    const float* xr = x + (size_t)row * k;
    float* yr = y + (size_t)row * k;
    const float* br = 0;
    if (has_bias) {
        const long long i2 = row % d2, i1 = (row / d2) % d1, i0 = row / ((long long)d1 * d2);
        br = bias + bstart + i0 * bs0 + i1 * bs1 + i2 * bs2;
    }
    float m = NEG_INF;
    for (int j = lane; j < k; j += 32) {
        const float s = xr[j] * scale + (br ? br[j * bs3] : 0.0f);
        yr[j] = s;
        m = fmaxf(m, s);
    }
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < k; j += 32) {
        const float e = expf(yr[j] - m);
        yr[j] = e;
        sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < k; j += 32) yr[j] *= inv;
}

// dx = scale * y * (dy - sum(dy * y)) per row, one warp per row.
extern "C" __global__ void softmax_bwd_f32(const float* y, const float* dy, float* dx, const int rows, const int k,
                                           const float scale) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const size_t off = (size_t)row * k;
    float dot = 0.0f;
    for (int j = lane; j < k; j += 32) dot += y[off + j] * dy[off + j];
    dot = warp_sum(dot);
    for (int j = lane; j < k; j += 32) dx[off + j] = scale * y[off + j] * (dy[off + j] - dot);
}

// ---- Bias + GELU (kind 0: erf, BERT's gelu; 1: tanh approximation, GPT-2's gelu_new). ----
__device__ void gelu_and_slope(const float u, const int kind, float* g, float* slope) {
    if (kind == 0) {
        const float cdf = 0.5f * (1.0f + erff(u * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * expf(-0.5f * u * u);
        *g = u * cdf;
        *slope = cdf + u * pdf;
    } else {
        const float c = 0.044715f, a = 0.79788456080286536f;
        const float t = tanhf(a * (u + c * u * u * u));
        const float d_inner = a * (1.0f + 3.0f * c * u * u);
        *g = 0.5f * u * (1.0f + t);
        *slope = 0.5f * (1.0f + t) + 0.5f * u * (1.0f - t * t) * d_inner;
    }
}

// y = gelu(x + b[column]) over n elements of rows d wide.
extern "C" __global__ void bias_gelu_f32(const float* x, const float* b, float* y, const unsigned long long n,
                                         const int d, const int kind) {
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float g, slope;
        gelu_and_slope(x[i] + b[i % d], kind, &g, &slope);
        y[i] = g;
    }
}

// out = [dx | db] (db zeroed by the caller): dx = dy * gelu'(x + b), db = column sums of dx.
// Block (bx, by) takes rows bx*rows_per_block.. and columns by*blockDim.x + threadIdx.x, so each
// thread sums one column over its rows and adds it once.
extern "C" __global__ void bias_gelu_bwd_f32(const float* x, const float* b, const float* dy, float* out,
                                             const int rows, const int d, const int kind,
                                             const int rows_per_block) {
    const int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= d) return;
    float* db = out + (size_t)rows * d;
    const float bi = b[i];
    const int first = blockIdx.x * rows_per_block;
    const int last = min(rows, first + rows_per_block);
    float acc = 0.0f;
    for (int r = first; r < last; ++r) {
        const size_t at = (size_t)r * d + i;
        float g, slope;
        gelu_and_slope(x[at] + bi, kind, &g, &slope);
        const float dx = dy[at] * slope;
        out[at] = dx;
        acc += dx;
    }
    atomicAdd(db + i, acc);
}

// ---- SwiGLU, llama's feed-forward gate: y = silu(g) * u = g * sigmoid(g) * u (the exponent
// capped at 80, as the CPU kernel). ----
extern "C" __global__ void swiglu_f32(const float* g, const float* u, float* y, const unsigned long long n) {
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float gi = g[i];
        const float s = 1.0f / (1.0f + expf(fminf(-gi, 80.0f)));
        y[i] = gi * s * u[i];
    }
}

// out = [dg | du]: dg = dy * u * s * (1 + g * (1 - s)), du = dy * g * s, s = sigmoid(g).
extern "C" __global__ void swiglu_bwd_f32(const float* g, const float* u, const float* dy, float* out,
                                          const unsigned long long n) {
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float gi = g[i], ui = u[i], di = dy[i];
        const float s = 1.0f / (1.0f + expf(fminf(-gi, 80.0f)));
        out[i] = di * ui * s * (1.0f + gi * (1.0f - s));
        out[n + i] = di * gi * s;
    }
}

// ---- Cross-entropy of logits rows against class ids, one block per row. ----
// loss[r] = log(sum(exp(x_r))) - x_r[t_r]; NaN for a target outside 0..k (the loss guard
// reports it).
extern "C" __global__ void cross_entropy_f32(const float* x, const unsigned int* t, float* loss, const int k) {
    __shared__ float shared[33];
    const size_t row = blockIdx.x;
    const float* xr = x + row * k;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, xr[j]);
    m = block_max(m, shared);
    float s = 0.0f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(xr[j] - m);
    s = block_sum(s, shared);
    if (threadIdx.x == 0) {
        const unsigned int c = t[row];
        loss[row] = c < (unsigned int)k ? logf(s) + m - xr[c] : __int_as_float(0x7fc00000);
    }
}

// dx_r = (softmax(x_r) - onehot(t_r)) * g[r], one block per row.
extern "C" __global__ void cross_entropy_bwd_f32(const float* x, const unsigned int* t, const float* g, float* dx,
                                                 const int k) {
    __shared__ float shared[33];
    const size_t row = blockIdx.x;
    const float* xr = x + row * k;
    float* dr = dx + row * k;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, xr[j]);
    m = block_max(m, shared);
    float s = 0.0f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(xr[j] - m);
    const float lse = m + logf(block_sum(s, shared));
    const float gr = g[row];
    const unsigned int c = t[row];
    for (int j = threadIdx.x; j < k; j += blockDim.x)
        dr[j] = (expf(xr[j] - lse) - ((unsigned int)j == c ? 1.0f : 0.0f)) * gr;
}

// ---- RMS norm (llama): y = x / sqrt(mean(x^2) + eps) * w, one block per row. ----
__device__ float rms_rstd(const float* x, int d, float eps, float* shared) {
    float q = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) q += x[i] * x[i];
    return 1.0f / sqrtf(block_sum(q, shared) / (float)d + eps);
}

extern "C" __global__ void rms_norm_f32(const float* x, const float* w, float* y, const int d, const float eps) {
    __shared__ float shared[33];
    const size_t row = blockIdx.x;
    const float* xr = x + row * d;
    float* yr = y + row * d;
    const float r = rms_rstd(xr, d, eps, shared);
    for (int i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * r * w[i];
}

// out = [dx | dw] (dw zeroed by the caller): with h = x*r and g = dy*w,
// dx = r * (g - h * mean(g*h)), dw = column sums of dy*h; rows_per_block rows per block, the
// partial dw per column kept in registers and added once (as layer_norm_bwd_f32).
extern "C" __global__ void rms_norm_bwd_f32(const float* x, const float* w, const float* dy, float* out,
                                            const int rows, const int d, const float eps,
                                            const int rows_per_block) {
    __shared__ float shared[33];
    float* dw = out + (size_t)rows * d;
    float aw[8];
    for (int k = 0; k < 8; ++k) aw[k] = 0.0f;
    const int first = blockIdx.x * rows_per_block;
    const int last = min(rows, first + rows_per_block);
    for (int r = first; r < last; ++r) {
        const float* xr = x + (size_t)r * d;
        const float* gr = dy + (size_t)r * d;
        float* dxr = out + (size_t)r * d;
        const float rs = rms_rstd(xr, d, eps, shared);
        float sgx = 0.0f;
        for (int i = threadIdx.x; i < d; i += blockDim.x) sgx += gr[i] * w[i] * xr[i] * rs;
        const float mean_gx = block_sum(sgx, shared) / (float)d;
        int k = 0;
        for (int i = threadIdx.x; i < d; i += blockDim.x, ++k) {
            const float h = xr[i] * rs;
            dxr[i] = rs * (gr[i] * w[i] - h * mean_gx);
            aw[k] += gr[i] * h;
        }
    }
    int k = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x, ++k) atomicAdd(dw + i, aw[k]);
}

// ---- Rotary embedding, half-split layout: each (x[i], x[i + d/2]) of a head row rotated by its
// position's angle (rows cycle through len positions); inverse: by the opposite angle. ----
extern "C" __global__ void rope_f32(const float* x, const float* cos, const float* sin, float* y,
                                    const unsigned long long pairs, const int d, const int len,
                                    const int inverse) {
    const int half = d >> 1;
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long p = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += stride) {
        const unsigned long long row = p / half;
        const int i = (int)(p % half);
        const size_t at = (size_t)(row % len) * half + i;
        const float c = cos[at], s = inverse ? -sin[at] : sin[at];
        const size_t o = (size_t)row * d + i;
        const float x1 = x[o], x2 = x[o + half];
        y[o] = x1 * c - x2 * s;
        y[o + half] = x2 * c + x1 * s;
    }
}
