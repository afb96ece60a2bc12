// Z-buffer rasteriser of rtface (CUDA). Twin of rtface/render/raster_cpu.py: same coverage rule, same
// 64-bit depth key, same float32 arithmetic, hence bit-identical results. Conventions: x right, y down, pixel
// (i, j) centred at (j + 0.5, i + 0.5), z toward the camera (largest z visible). No headers: compiled by NVRTC
// through cupy.RawModule.
//
// IEEE float32 whatever the compiler flags: CuPy appends -ftz=true to every RawModule's options (after the
// caller's, and NVRTC honours the last), which flushes subnormal operands and results of float instructions
// and of the __f*_rn intrinsics, while the Numba twin keeps them. So every float operation here is inline PTX
// without .ftz (rt_add, rt_sub, rt_mul, rt_div: round to nearest, subnormals kept, never fused into an FMA),
// and every float test is on the bits (rt_is_zero, rt_positive, ...). tests/render/test_kernel_ptx.py checks
// that the compiled PTX has no .ftz instruction.
//
// Launch order on one stream: rt_clear (keys = EMPTY), rt_raster (one thread per triangle and image,
// atomicMin of the key into every covered pixel), rt_resolve (one thread per pixel).
//
// Layouts (C order): verts (B, V, 3) float32, tris (T, 3) int32, keys (B, H, W) uint64,
// depth (B, H, W) float32, tri (B, H, W) int32, bary (B, H, W, 3) float32, mask (B, H, W) uint8.

#define RT_SUBPIXEL 256LL          // fixed-point steps per pixel
#define RT_HALF 128LL              // pixel centre offset in fixed point
#define RT_MAX_COORD 1048576.0f    // |x|, |y| above 2^20 px: triangle skipped (int64 edge math stays exact)
#define RT_EMPTY 0xFFFFFFFFFFFFFFFFull

#define RT_MAX_COORD_BITS 0x49800000u  // __float_as_uint(RT_MAX_COORD)

#if defined(__CUDA_ARCH__)
__device__ __forceinline__ float rt_add(float a, float b) {
    float r;
    asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}
__device__ __forceinline__ float rt_sub(float a, float b) {
    float r;
    asm("sub.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}
__device__ __forceinline__ float rt_mul(float a, float b) {
    float r;
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}
__device__ __forceinline__ float rt_div(float a, float b) {  // IEEE division, correctly rounded
    float r;
    asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}
// round to nearest even, to int64 (numpy.rint then int64 in the twin)
__device__ __forceinline__ long long rt_rint_ll(float a) {
    long long r;
    asm("cvt.rni.s64.f32 %0, %1;" : "=l"(r) : "f"(a));
    return r;
}
#else  // compiled as C++ on the host (tests/render/test_raster.py, with -ffp-contract=off and <cmath>)
inline float rt_add(float a, float b) { return a + b; }
inline float rt_sub(float a, float b) { return a - b; }
inline float rt_mul(float a, float b) { return a * b; }
inline float rt_div(float a, float b) { return a / b; }
inline long long rt_rint_ll(float a) { return llrintf(a); }
#endif

__device__ __forceinline__ bool rt_finite(float v) {
    return (__float_as_uint(v) & 0x7F800000u) != 0x7F800000u;
}
__device__ __forceinline__ bool rt_not_nan(float v) { return (__float_as_uint(v) & 0x7FFFFFFFu) <= 0x7F800000u; }
__device__ __forceinline__ bool rt_is_zero(float v) { return (__float_as_uint(v) & 0x7FFFFFFFu) == 0u; }
// v > 0 for a number that is not NaN: sign bit clear and not zero
__device__ __forceinline__ bool rt_positive(float v) {
    const unsigned int u = __float_as_uint(v);
    return u != 0u && u <= 0x7F800000u;
}
// |v| <= RT_MAX_COORD for a finite v (the bits of non-negative floats are ordered like their values)
__device__ __forceinline__ bool rt_within(float v) { return (__float_as_uint(v) & 0x7FFFFFFFu) <= RT_MAX_COORD_BITS; }

__device__ __forceinline__ bool rt_vertex_ok(const float* p) {
    return rt_finite(p[0]) && rt_finite(p[1]) && rt_finite(p[2]) && rt_within(p[0]) && rt_within(p[1]);
}

__device__ __forceinline__ long long rt_min(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long rt_max(long long a, long long b) { return a > b ? a : b; }

// x * 256 is exact in float32 for |x| <= 2^20; round half to even, like numpy.rint.
__device__ __forceinline__ long long rt_snap(float v) {
    return rt_rint_ll(rt_mul(v, 256.0f));
}

// Twice the signed area in float32: positive when clockwise on screen (y down).
__device__ __forceinline__ float rt_float_area(float x0, float y0, float x1, float y1, float x2, float y2) {
    return rt_sub(rt_mul(rt_sub(x1, x0), rt_sub(y2, y0)), rt_mul(rt_sub(y1, y0), rt_sub(x2, x0)));
}

// Barycentrics and depth at (px, py); the exact operation order of raster_cpu.interpolate.
__device__ __forceinline__ float rt_interpolate(const float* v0, const float* v1, const float* v2, float area,
                                                float px, float py, float* b0, float* b1, float* b2) {
    const float x0 = v0[0], y0 = v0[1], z0 = v0[2];
    const float x1 = v1[0], y1 = v1[1], z1 = v1[2];
    const float x2 = v2[0], y2 = v2[1], z2 = v2[2];
    const float w0 = rt_sub(rt_mul(rt_sub(x2, x1), rt_sub(py, y1)), rt_mul(rt_sub(y2, y1), rt_sub(px, x1)));
    const float w1 = rt_sub(rt_mul(rt_sub(x0, x2), rt_sub(py, y2)), rt_mul(rt_sub(y0, y2), rt_sub(px, x2)));
    const float w2 = rt_sub(rt_mul(rt_sub(x1, x0), rt_sub(py, y0)), rt_mul(rt_sub(y1, y0), rt_sub(px, x0)));
    const float inv = rt_div(1.0f, area);
    *b0 = rt_mul(w0, inv);
    *b1 = rt_mul(w1, inv);
    *b2 = rt_mul(w2, inv);
    return rt_add(rt_add(rt_mul(*b0, z0), rt_mul(*b1, z1)), rt_mul(*b2, z2));
}

// (~order_preserving_bits(z)) << 32 | triangle: larger z -> smaller key; z + 0 turns -0 into +0.
__device__ __forceinline__ unsigned long long rt_depth_key(float z, unsigned int triangle) {
    const unsigned int u = __float_as_uint(rt_add(z, 0.0f));
    const unsigned int inverted = (u & 0x80000000u) ? u : (u ^ 0x7FFFFFFFu);
    return ((unsigned long long)inverted << 32) | (unsigned long long)triangle;
}

// Top-left test of an edge of a triangle oriented clockwise on screen (positive area, y down).
__device__ __forceinline__ long long rt_top_left(long long dx, long long dy) {
    return (dy < 0 || (dy == 0 && dx > 0)) ? 1 : 0;
}

extern "C" __global__ void rt_clear(unsigned long long* keys, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride) {
        keys[k] = RT_EMPTY;
    }
}

extern "C" __global__ void rt_raster(const float* __restrict__ verts, const int* __restrict__ tris,
                                     int batch, int nv, int nt, int height, int width, int cull,
                                     unsigned long long* keys) {
    const long long gid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (long long)batch * nt) return;
    const int b = (int)(gid / nt);
    const int t = (int)(gid - (long long)b * nt);
    const int i0 = tris[3LL * t], i1 = tris[3LL * t + 1], i2 = tris[3LL * t + 2];
    if (i0 < 0 || i1 < 0 || i2 < 0 || i0 >= nv || i1 >= nv || i2 >= nv) return;
    const float* vb = verts + (long long)b * nv * 3;
    const float* p0 = vb + 3LL * i0;
    const float* p1 = vb + 3LL * i1;
    const float* p2 = vb + 3LL * i2;
    if (!(rt_vertex_ok(p0) && rt_vertex_ok(p1) && rt_vertex_ok(p2))) return;

    const long long ax = rt_snap(p0[0]), ay = rt_snap(p0[1]);
    long long bx = rt_snap(p1[0]), by = rt_snap(p1[1]);
    long long cx = rt_snap(p2[0]), cy = rt_snap(p2[1]);
    const long long area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
    if (area == 0 || (cull && area > 0)) return;

    const long long xmin = rt_min(ax, rt_min(bx, cx)), xmax = rt_max(ax, rt_max(bx, cx));
    const long long ymin = rt_min(ay, rt_min(by, cy)), ymax = rt_max(ay, rt_max(by, cy));
    const long long j0 = xmin <= RT_HALF ? 0 : (xmin - RT_HALF + RT_SUBPIXEL - 1) >> 8;
    const long long j1 = xmax < RT_HALF ? -1 : rt_min((xmax - RT_HALF) >> 8, (long long)width - 1);
    const long long r0 = ymin <= RT_HALF ? 0 : (ymin - RT_HALF + RT_SUBPIXEL - 1) >> 8;
    const long long r1 = ymax < RT_HALF ? -1 : rt_min((ymax - RT_HALF) >> 8, (long long)height - 1);
    if (j0 > j1 || r0 > r1) return;

    const float farea = rt_float_area(p0[0], p0[1], p1[0], p1[1], p2[0], p2[1]);
    if (rt_is_zero(farea) || rt_positive(farea) != (area > 0)) return;
    if (area < 0) {  // orient clockwise on screen for the coverage test
        long long s = bx; bx = cx; cx = s;
        s = by; by = cy; cy = s;
    }
    // edge k is opposite vertex k: e0 = b->c, e1 = c->a, e2 = a->b
    const long long dx0 = cx - bx, dy0 = cy - by;
    const long long dx1 = ax - cx, dy1 = ay - cy;
    const long long dx2 = bx - ax, dy2 = by - ay;
    const long long t0 = rt_top_left(dx0, dy0), t1 = rt_top_left(dx1, dy1), t2 = rt_top_left(dx2, dy2);
    const long long px0 = j0 * RT_SUBPIXEL + RT_HALF;
    unsigned long long* kb = keys + (long long)b * height * width;
    float b0, b1, b2;
    for (long long r = r0; r <= r1; ++r) {
        const long long py = r * RT_SUBPIXEL + RT_HALF;
        long long e0 = dx0 * (py - by) - dy0 * (px0 - bx) + t0;
        long long e1 = dx1 * (py - cy) - dy1 * (px0 - cx) + t1;
        long long e2 = dx2 * (py - ay) - dy2 * (px0 - ax) + t2;
        const float fpy = rt_add((float)r, 0.5f);
        for (long long j = j0; j <= j1; ++j) {
            if (e0 > 0 && e1 > 0 && e2 > 0) {
                const float fpx = rt_add((float)j, 0.5f);
                const float z = rt_interpolate(p0, p1, p2, farea, fpx, fpy, &b0, &b1, &b2);
                if (rt_not_nan(z)) {
                    atomicMin(kb + r * width + j, rt_depth_key(z, (unsigned int)t));
                }
            }
            e0 -= dy0 * RT_SUBPIXEL;
            e1 -= dy1 * RT_SUBPIXEL;
            e2 -= dy2 * RT_SUBPIXEL;
        }
    }
}

extern "C" __global__ void rt_resolve(const float* __restrict__ verts, const int* __restrict__ tris,
                                      const unsigned long long* __restrict__ keys, int batch, int nv,
                                      int height, int width, float* depth, int* tri, float* bary,
                                      unsigned char* mask) {
    const long long n = (long long)batch * height * width;
    const long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const unsigned long long key = keys[k];
    if (key == RT_EMPTY) {
        depth[k] = 0.0f;
        tri[k] = -1;
        bary[3 * k] = 0.0f;
        bary[3 * k + 1] = 0.0f;
        bary[3 * k + 2] = 0.0f;
        mask[k] = 0;
        return;
    }
    const long long hw = (long long)height * width;
    const long long b = k / hw;
    const long long pix = k - b * hw;
    const long long r = pix / width;
    const long long j = pix - r * width;
    const int t = (int)(key & 0xFFFFFFFFull);
    const float* vb = verts + b * nv * 3;
    const float* p0 = vb + 3LL * tris[3LL * t];
    const float* p1 = vb + 3LL * tris[3LL * t + 1];
    const float* p2 = vb + 3LL * tris[3LL * t + 2];
    const float farea = rt_float_area(p0[0], p0[1], p1[0], p1[1], p2[0], p2[1]);
    float b0, b1, b2;
    const float z = rt_interpolate(p0, p1, p2, farea, rt_add((float)j, 0.5f), rt_add((float)r, 0.5f),
                                   &b0, &b1, &b2);
    depth[k] = z;
    tri[k] = t;
    bary[3 * k] = b0;
    bary[3 * k + 1] = b1;
    bary[3 * k + 2] = b2;
    mask[k] = 1;
}
