// Expected tensors per architecture and the check of a checkpoint against them.

#include "effarch/model/tensor_spec.h"

#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "architectures.h"
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
    const char* kind = p.kind == CheckpointProblem::Kind::Missing      ? "missing"
                       : p.kind == CheckpointProblem::Kind::Unexpected ? "unexpected"
                                                                       : "wrong shape";
    msg += fmt::format("\n  {} tensor '{}': {}", kind, p.tensor, p.detail);
  }
  throw CheckpointError(msg);
}

}  // namespace effarch::model
