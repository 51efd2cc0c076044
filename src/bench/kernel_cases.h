// The op registry behind effarch/bench/kernels.h: the cases themselves (kernel_cases.cpp) and what
// the sweep (kernels.cpp) records of the scan cases' variants.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "effarch/bench/kernels.h"
#include "effarch/ops/ssd.h"

namespace effarch::bench::detail {

// Every op `effarch kernels` knows, in the order it lists and runs them: Mamba-1, Mamba-2,
// attention, the decode step's fused small ops, its dense GEMVs, MoE decode and prefill.
std::vector<KernelCase> make_kernel_cases();

// The products an SSD scan case asks for (the tensor-core default or forced FMA); none for the
// other ops.
std::optional<ops::SsdScanProducts> ssd_case_products(const KernelCase& c);

// For a row that ran the CUDA kernel: the SSD products it ran (`products`), the selective scan
// prefill's variant (`variant`: ops::selective_scan_variant_name), and the number of pieces a
// sequence-split selective scan ran in (`pieces`); none otherwise.
std::optional<std::string> scan_products(const KernelCase& c, const KernelShape& s, const std::string& impl);
std::optional<std::string> scan_variant(const KernelCase& c, const std::string& impl);
std::optional<int> scan_pieces(const KernelCase& c, const KernelShape& s, const std::string& impl,
                               const nlohmann::json& environment);

}  // namespace effarch::bench::detail
