// Checkpoint folders: single file, sharded with an index, shards without an index.

#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/io/checkpoint.h"

namespace effarch::io {
namespace {

using effarch::testing::TempDir;

TEST(Checkpoint, ShardedWithIndex) {
  TempDir dir;
  save_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", at::ones({2})}, {"b", at::zeros({3})}});
  save_safetensors(dir / "model-00002-of-00002.safetensors", {{"c", at::full({4}, 2.0)}});
  write_index(dir.path(),
              {{"a", "model-00001-of-00002.safetensors"},
               {"b", "model-00001-of-00002.safetensors"},
               {"c", "model-00002-of-00002.safetensors"}},
              36);
  const auto store = TensorStore::open_folder(dir.path());
  EXPECT_TRUE(store.has_index());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(store.file_of("c").path().filename(), "model-00002-of-00002.safetensors");
  EXPECT_TRUE(at::equal(store.view("c"), at::full({4}, 2.0)));
  EXPECT_TRUE(at::equal(store.load("a", at::kHalf, at::kCPU), at::ones({2}, at::kHalf)));
}

TEST(Checkpoint, ShardsWithoutIndex) {
  TempDir dir;
  save_safetensors(dir / "x.safetensors", {{"a", at::ones({2})}});
  save_safetensors(dir / "y.safetensors", {{"b", at::ones({2})}});
  const auto store = TensorStore::open_folder(dir.path());
  EXPECT_FALSE(store.has_index());
  EXPECT_EQ(store.size(), 2u);
}

// model.safetensors is read alone where it is there, as transformers reads the folder: before an
// index, and beside other files (Mistral's releases keep consolidated.safetensors there).
TEST(Checkpoint, ModelSafetensorsIsReadAloneBesideOtherFiles) {
  TempDir dir;
  save_safetensors(dir / "model.safetensors", {{"a", at::ones({2})}});
  save_safetensors(dir / "consolidated.safetensors", {{"tok_embeddings.weight", at::ones({2})}});
  EXPECT_EQ(TensorStore::open_folder(dir.path()).names(), (std::vector<std::string>{"a"}));
  save_safetensors(dir / "model-00001-of-00001.safetensors", {{"b", at::ones({2})}});
  write_index(dir.path(), {{"b", "model-00001-of-00001.safetensors"}}, 8);
  const auto store = TensorStore::open_folder(dir.path());
  EXPECT_FALSE(store.has_index());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a"}));
}

// A folder of PyTorch pickles only: the error says that is what it found.
TEST(Checkpoint, PickleOnlyFolderIsNamed) {
  TempDir dir;
  std::ofstream(dir / "pytorch_model.bin") << "not read";
  EXPECT_THROW_WITH(TensorStore::open_folder(dir.path()), CheckpointError,
                    {"no model.safetensors", "pytorch_model.bin is a PyTorch pickle", "safe_serialization=True"});
}

TEST(Checkpoint, IndexMustAgreeWithShards) {
  TempDir dir;
  save_safetensors(dir / "s1.safetensors", {{"a", at::ones({2})}, {"extra", at::ones({1})}});
  write_index(dir.path(), {{"a", "s1.safetensors"}}, 8);
  EXPECT_THROW_WITH(TensorStore::open_folder(dir.path()), CheckpointError,
                    {"model.safetensors.index.json", "'extra'", "does not list"});
}

TEST(Checkpoint, NotAFolder) {
  TempDir dir;
  EXPECT_THROW_WITH(TensorStore::open_folder(dir / "missing"), CheckpointError, {"missing", "not a checkpoint folder"});
}

}  // namespace
}  // namespace effarch::io
