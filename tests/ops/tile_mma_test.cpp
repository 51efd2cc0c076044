// kernels/common/tile_mma.h on the host: the layer the tensor-core kernels' CPU emulations run
// (the SSD scan's, tests/ops/ssd_cuda_test.cpp). Loads in both layouts with a leading dimension,
// accumulation onto a loaded tile, stores that touch only the 16x16 tile. Small integers, so every
// product and sum is exact and the results are compared for equality with a plain matmul. (The
// device side, nvcuda::wmma, is compared with this through the kernels' GPU tests.)

#include <gtest/gtest.h>

#include <vector>

#include "common/tile_mma.h"

namespace {

namespace tile = effarch::kernels::tile;
constexpr int kD = tile::kDim;

// Element (i, j) of a logical 16x16 matrix, small integers of both signs.
float value(int seed, int i, int j) { return static_cast<float>((seed * 7 + i * 5 + j * 3) % 11 - 5); }

// The matrix stored with leading dimension ld in the given layout; the padding holds a marker.
template <class Layout>
std::vector<float> stored(int seed, int ld) {
  std::vector<float> out(static_cast<size_t>(kD * ld), 1000.0f);
  for (int i = 0; i < kD; ++i)
    for (int j = 0; j < kD; ++j) out[Layout::kRowMajor ? i * ld + j : j * ld + i] = value(seed, i, j);
  return out;
}

template <class LA, class LB>
void check_product(int lda, int ldb) {
  const std::vector<float> a = stored<LA>(1, lda), b = stored<LB>(2, ldb), b2 = stored<LB>(3, ldb);
  const int ldc = 20;
  std::vector<float> c(static_cast<size_t>(kD * ldc), -7.0f);
  for (int i = 0; i < kD; ++i)
    for (int j = 0; j < kD; ++j) c[i * ldc + j] = value(4, i, j);

  tile::FragA<float, LA> fa;
  tile::FragB<float, LB> fb, fb2;
  tile::FragAcc acc;
  tile::load(fa, a.data(), lda);
  tile::load(fb, b.data(), ldb);
  tile::load(fb2, b2.data(), ldb);
  tile::load_acc(acc, c.data(), ldc);
  tile::mma(acc, fa, fb);
  tile::mma(acc, fa, fb2);
  std::vector<float> out(static_cast<size_t>(kD * ldc), -7.0f);
  tile::store(out.data(), acc, ldc);

  for (int i = 0; i < kD; ++i) {
    for (int j = 0; j < kD; ++j) {
      float want = value(4, i, j);
      for (int k = 0; k < kD; ++k) want += value(1, i, k) * (value(2, k, j) + value(3, k, j));
      EXPECT_EQ(out[i * ldc + j], want) << "(" << i << ", " << j << ")";
    }
    for (int j = kD; j < ldc; ++j) EXPECT_EQ(out[i * ldc + j], -7.0f) << "store wrote past the tile";
  }
}

TEST(TileMma, RowMajorTimesRowMajor) { check_product<tile::RowMajor, tile::RowMajor>(24, 16); }
TEST(TileMma, RowMajorTimesColMajor) { check_product<tile::RowMajor, tile::ColMajor>(16, 24); }
TEST(TileMma, ColMajorTimesRowMajor) { check_product<tile::ColMajor, tile::RowMajor>(40, 72); }
TEST(TileMma, ColMajorTimesColMajor) { check_product<tile::ColMajor, tile::ColMajor>(24, 136); }

TEST(TileMma, ZeroClearsTheAccumulator) {
  tile::FragAcc acc;
  std::vector<float> ones(kD * kD, 1.0f);
  tile::load_acc(acc, ones.data(), kD);
  tile::zero(acc);
  std::vector<float> out(kD * kD, 5.0f);
  tile::store(out.data(), acc, kD);
  for (const float v : out) EXPECT_EQ(v, 0.0f);
}

}  // namespace
