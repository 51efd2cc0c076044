#pragma once
// A thin warp-level tile-MMA layer: 16x16x16 products with fp32 accumulation, the same source on
// the GPU (tensor cores through nvcuda::wmma, sm_80+) and on the host (plain loops), so a kernel's
// whole warp/tile structure runs in a CPU test's emulation.
//
//   FragA<T, Layout>   a 16x16 tile of the left operand  (m, k), element type T
//   FragB<T, Layout>   a 16x16 tile of the right operand (k, n)
//   FragAcc            a 16x16 fp32 accumulator (m, n)
//   load(frag, p, ld)       operand tile from shared/global memory, leading dimension ld (elements):
//                           RowMajor: (i, j) at p[i * ld + j]; ColMajor: (i, j) at p[j * ld + i]
//   zero(acc); load_acc(acc, p, ld) / store(p, acc, ld)   fp32 tile, row-major
//   mma(acc, a, b)          acc += a b
//
// Every call is warp-collective on the GPU (all 32 lanes, converged); on the host one call stands
// for the warp. wmma's element-to-lane mapping is opaque, so kernels touch fragments only through
// these calls: elementwise work (masks, decays, scaling, rounding) goes through memory between
// products, where the host emulation can do exactly what the device does.
//
// Device requirements (wmma's): T is __nv_bfloat16 or __half; p 32-byte aligned; ld a multiple of
// 8 for 16-bit T and of 4 for float. On the host T is float, holding values already rounded to
// the element type (the emulation rounds where the kernel stores into T), and products are exact
// (a bf16 or fp16 product fits fp32); the K sum is in fp32, in an order that may differ from the
// tensor cores' by fp32 rounding.

#include "common/host_device.h"

#ifdef __CUDACC__
#include <mma.h>
#endif

namespace effarch::kernels::tile {

inline constexpr int kDim = 16;  // M = N = K of every product

struct RowMajor {
  static constexpr bool kRowMajor = true;
};
struct ColMajor {
  static constexpr bool kRowMajor = false;
};

#ifdef __CUDACC__

namespace detail {
template <class Layout>
struct Wmma;
template <>
struct Wmma<RowMajor> {
  using type = nvcuda::wmma::row_major;
};
template <>
struct Wmma<ColMajor> {
  using type = nvcuda::wmma::col_major;
};
}  // namespace detail

template <class T, class Layout>
using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, kDim, kDim, kDim, T, typename detail::Wmma<Layout>::type>;
template <class T, class Layout>
using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, kDim, kDim, kDim, T, typename detail::Wmma<Layout>::type>;
using FragAcc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, kDim, kDim, kDim, float>;

template <class Frag, class T>
__device__ __forceinline__ void load(Frag& f, const T* p, int ld) {
  nvcuda::wmma::load_matrix_sync(f, p, static_cast<unsigned>(ld));
}
__device__ __forceinline__ void zero(FragAcc& acc) { nvcuda::wmma::fill_fragment(acc, 0.0f); }
__device__ __forceinline__ void load_acc(FragAcc& acc, const float* p, int ld) {
  nvcuda::wmma::load_matrix_sync(acc, p, static_cast<unsigned>(ld), nvcuda::wmma::mem_row_major);
}
__device__ __forceinline__ void store(float* p, const FragAcc& acc, int ld) {
  nvcuda::wmma::store_matrix_sync(p, acc, static_cast<unsigned>(ld), nvcuda::wmma::mem_row_major);
}
template <class FA, class FB>
__device__ __forceinline__ void mma(FragAcc& acc, const FA& a, const FB& b) {
  nvcuda::wmma::mma_sync(acc, a, b, acc);
}

#else  // host: the logical 16x16 tiles as float arrays

// In the CPU executor (tests/sim/cuda_sim.h) every lane runs these calls on a whole tile of its
// own; a barrier of the warp around each access to memory keeps them collective, as wmma's are
// (no lane reads a tile before every lane has written what it holds, nor writes over one another
// lane is still to read). In a CPU test's emulation one call stands for the warp: nothing.
#ifdef EFFARCH_CUDA_SIM
#define EFFARCH_TILE_WARP_SYNC() __syncwarp()
#else
#define EFFARCH_TILE_WARP_SYNC()
#endif

namespace detail {
// Element (i, j) of a tile stored with leading dimension ld in the given layout.
template <class Layout>
inline int offset(int i, int j, int ld) {
  return Layout::kRowMajor ? i * ld + j : j * ld + i;
}
}  // namespace detail

template <class T, class Layout>
struct FragA {
  float v[kDim][kDim];  // [m][k]
};
template <class T, class Layout>
struct FragB {
  float v[kDim][kDim];  // [k][n]
};
struct FragAcc {
  float v[kDim][kDim];  // [m][n]
};

template <class T, class Layout>
inline void load(FragA<T, Layout>& f, const T* p, int ld) {
  EFFARCH_TILE_WARP_SYNC();
  for (int i = 0; i < kDim; ++i)
    for (int j = 0; j < kDim; ++j) f.v[i][j] = static_cast<float>(p[detail::offset<Layout>(i, j, ld)]);
  EFFARCH_TILE_WARP_SYNC();
}
template <class T, class Layout>
inline void load(FragB<T, Layout>& f, const T* p, int ld) {
  EFFARCH_TILE_WARP_SYNC();
  for (int i = 0; i < kDim; ++i)
    for (int j = 0; j < kDim; ++j) f.v[i][j] = static_cast<float>(p[detail::offset<Layout>(i, j, ld)]);
  EFFARCH_TILE_WARP_SYNC();
}
inline void zero(FragAcc& acc) {
  for (auto& row : acc.v)
    for (float& e : row) e = 0.0f;
}
inline void load_acc(FragAcc& acc, const float* p, int ld) {
  EFFARCH_TILE_WARP_SYNC();
  for (int i = 0; i < kDim; ++i)
    for (int j = 0; j < kDim; ++j) acc.v[i][j] = p[i * ld + j];
  EFFARCH_TILE_WARP_SYNC();
}
inline void store(float* p, const FragAcc& acc, int ld) {
  EFFARCH_TILE_WARP_SYNC();
  for (int i = 0; i < kDim; ++i)
    for (int j = 0; j < kDim; ++j) p[i * ld + j] = acc.v[i][j];
  EFFARCH_TILE_WARP_SYNC();
}
template <class T, class LA, class LB>
inline void mma(FragAcc& acc, const FragA<T, LA>& a, const FragB<T, LB>& b) {
  for (int m = 0; m < kDim; ++m) {
    for (int n = 0; n < kDim; ++n) {
      float sum = 0.0f;
      for (int k = 0; k < kDim; ++k) sum += a.v[m][k] * b.v[k][n];
      acc.v[m][n] += sum;
    }
  }
}

#endif

}  // namespace effarch::kernels::tile
