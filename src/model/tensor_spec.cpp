// Expected tensors per architecture and the check of a checkpoint against them.

#include "effarch/model/tensor_spec.h"

#include <algorithm>
#include <map>
#include <set>

#include <c10/core/ScalarType.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "architectures.h"
#include "effarch/common/dtype.h"
#include "effarch/common/error.h"
#include "effarch/io/checkpoint.h"

namespace effarch::model {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& config) {
  const Architecture* arch = find_architecture(config.architecture);
  if (arch == nullptr) throw ConfigError(fmt::format("unknown architecture '{}'", config.architecture));
  return arch->tensors(config);
}

namespace {

// Buffers some exporters save that carry no parameters.
bool ignorable(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".rotary_emb.inv_freq") || ends_with(".attn.masked_bias") || ends_with(".attn.bias");
}

}  // namespace

CheckpointCheck check_checkpoint(const ModelConfig& config, const io::TensorStore& store) {
  CheckpointCheck check;
  std::set<std::string> used;
  for (const auto& spec : expected_tensors(config)) {
    std::string found;
    if (store.find(spec.name) != nullptr) {
      found = spec.name;
    } else {
      for (const auto& alias : spec.aliases) {
        if (store.find(alias) != nullptr) {
          found = alias;
          break;
        }
      }
    }
    if (found.empty()) {
      if (!spec.optional) {
        check.problems.push_back({CheckpointProblem::Kind::Missing, spec.name,
                                  fmt::format("expected shape [{}]", fmt::join(spec.shape, ", "))});
      }
      continue;
    }
    used.insert(found);
    const io::TensorInfo* info = store.find(found);
    if (info->shape != spec.shape) {
      check.problems.push_back({CheckpointProblem::Kind::WrongShape, spec.name,
                                fmt::format("expected [{}], found [{}] in {}", fmt::join(spec.shape, ", "),
                                            fmt::join(info->shape, ", "),
                                            store.file_of(found).path().filename().string())});
      continue;
    }
    const DType stored = info->dtype;
    if (!at::isFloatingType(to_scalar_type(stored))) {
      check.problems.push_back(
          {CheckpointProblem::Kind::WrongDtype, spec.name,
           fmt::format("stored as {} in {}: weights are read from float tensors (F32, F16, BF16, F64, F8); integer "
                       "weights are a quantised format effarch does not read (quantise with --weights int8 instead)",
                       safetensors_name(stored), store.file_of(found).path().filename().string())});
      continue;
    }
    check.resolved.emplace_back(spec.name, found);
  }
  for (const auto& name : store.names()) {
    if (used.count(name) != 0) continue;
    if (ignorable(name)) {
      check.ignored.push_back(name);
      continue;
    }
    check.problems.push_back({CheckpointProblem::Kind::Unexpected, name,
                              fmt::format("not part of {} (in {})", config.architecture,
                                          store.file_of(name).path().filename().string())});
  }
  return check;
}

void require_valid(const CheckpointCheck& check, const std::string& where) {
  if (check.ok()) return;
  std::string msg = fmt::format("{}: checkpoint does not match its config ({} problems):", where, check.problems.size());
  size_t shown = 0;
  for (const auto& p : check.problems) {
    if (++shown > 20) {
      msg += fmt::format("\n  ... and {} more (run `effarch inspect` for the full list)", check.problems.size() - 20);
      break;
    }
    std::string kind = kind_name(p.kind);
    std::replace(kind.begin(), kind.end(), '_', ' ');
    msg += fmt::format("\n  {} tensor '{}': {}", kind, p.tensor, p.detail);
  }
  throw CheckpointError(msg);
}

const char* kind_name(CheckpointProblem::Kind kind) {
  switch (kind) {
    case CheckpointProblem::Kind::Missing: return "missing";
    case CheckpointProblem::Kind::Unexpected: return "unexpected";
    case CheckpointProblem::Kind::WrongShape: return "wrong_shape";
    case CheckpointProblem::Kind::WrongDtype: return "wrong_dtype";
  }
  return "?";
}

}  // namespace effarch::model
