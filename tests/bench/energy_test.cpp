// Energy counters on the CPU: NVML's absence path (a library that does not exist), RAPL read from
// fixture files in a temp dir (package domains, sub-domains ignored, wraparound, unreadable
// counters), and the per-token arithmetic.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "effarch/bench/energy.h"

namespace effarch::bench {
namespace {

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(BenchEnergy, NvmlAbsentIsAReasonNotAnError) {
  const EnergyCounter c = open_nvml(0, "libeffarch-test-no-such-nvml.so.1");
  EXPECT_FALSE(c.available());
  EXPECT_EQ(c.source, "");
  EXPECT_FALSE(c.read_joules);
  EXPECT_NE(c.unavailable_reason.find("cannot load libeffarch-test-no-such-nvml.so.1"), std::string::npos)
      << c.unavailable_reason;
  const nlohmann::json d = c.describe();
  EXPECT_TRUE(d["source"].is_null());
  EXPECT_EQ(d["unavailable_reason"], c.unavailable_reason);
}

TEST(BenchEnergy, RaplDeltaWraps) {
  EXPECT_EQ(rapl_delta_uj(10, 30, 100), 20u);
  EXPECT_EQ(rapl_delta_uj(90, 5, 100), 15u);  // wrapped at 100
  EXPECT_EQ(rapl_delta_uj(7, 7, 100), 0u);
}

TEST(BenchEnergy, RaplFromFixtureFiles) {
  effarch::testing::TempDir dir;
  const auto root = dir.path() / "powercap";
  write(root / "intel-rapl:0" / "energy_uj", "1000000\n");
  write(root / "intel-rapl:0" / "max_energy_range_uj", "262143328850\n");
  write(root / "intel-rapl:0:0" / "energy_uj", "999999999\n");  // a sub-domain (core): part of package 0
  write(root / "intel-rapl:0:0" / "max_energy_range_uj", "262143328850\n");
  write(root / "intel-rapl:1" / "energy_uj", "9900000\n");
  write(root / "intel-rapl:1" / "max_energy_range_uj", "10000000\n");
  std::string why;
  const std::vector<RaplDomain> domains = find_rapl_domains(root.string(), &why);
  ASSERT_EQ(domains.size(), 2u) << why;
  EXPECT_EQ(domains[0].name, "intel-rapl:0");
  EXPECT_EQ(domains[1].max_energy_range_uj, 10000000u);

  EnergyCounter c = open_rapl(root.string());
  ASSERT_TRUE(c.available()) << c.unavailable_reason;
  EXPECT_EQ(c.source, "rapl");
  EXPECT_DOUBLE_EQ(*c.read_joules(), 0.0);  // counted from when it opened
  // Package 0 +2 J; package 1 wraps: 9.9 J -> 10 J (the range) -> 0.4 J is +0.5 J.
  write(root / "intel-rapl:0" / "energy_uj", "3000000\n");
  write(root / "intel-rapl:1" / "energy_uj", "400000\n");
  EXPECT_NEAR(*c.read_joules(), 2.5, 1e-12);
  write(root / "intel-rapl:0" / "energy_uj", "4000000\n");
  EXPECT_NEAR(*c.read_joules(), 3.5, 1e-12);  // cumulative
  EXPECT_EQ(c.describe()["source"], "rapl");
  EXPECT_TRUE(c.describe()["power_limit_w"].is_null());

  // A counter that disappears while reading: no figure, not a wrong one.
  std::filesystem::remove(root / "intel-rapl:1" / "energy_uj");
  EXPECT_FALSE(c.read_joules());
}

TEST(BenchEnergy, RaplUnavailableSaysWhy) {
  effarch::testing::TempDir dir;
  EnergyCounter none = open_rapl((dir / "absent").string());
  EXPECT_FALSE(none.available());
  EXPECT_NE(none.unavailable_reason.find("no "), std::string::npos) << none.unavailable_reason;
  write(dir / "empty" / "other" / "x", "1");
  EXPECT_NE(open_rapl((dir / "empty").string()).unavailable_reason.find("no intel-rapl:N"), std::string::npos);
  write(dir / "locked" / "intel-rapl:0" / "max_energy_range_uj", "100\n");  // energy_uj unreadable (absent here)
  const EnergyCounter locked = open_rapl((dir / "locked").string());
  EXPECT_FALSE(locked.available());
  EXPECT_NE(locked.unavailable_reason.find("cannot read"), std::string::npos) << locked.unavailable_reason;
  EXPECT_NE(locked.unavailable_reason.find("energy_uj"), std::string::npos);
}

TEST(BenchEnergy, PerTokenArithmetic) {
  // 2 J over 100 prefill tokens in 0.5 s; 3 J over 30 decoded tokens in 1.5 s.
  const EnergyResult e = energy_figures("rapl", 2.0, 100, 0.5, 3.0, 30, 1.5);
  EXPECT_DOUBLE_EQ(e.joules_per_prefill_token, 0.02);
  ASSERT_TRUE(e.joules_per_decode_token);
  EXPECT_DOUBLE_EQ(*e.joules_per_decode_token, 0.1);
  EXPECT_DOUBLE_EQ(e.average_power_w, 2.5);
  const nlohmann::json j = e;
  EXPECT_EQ(j["source"], "rapl");
  EXPECT_TRUE(j.get<EnergyResult>() == e);
  const EnergyResult prefill_only = energy_figures("nvml", 1.0, 10, 0.25, 0, 0, 0);
  EXPECT_FALSE(prefill_only.joules_per_decode_token);
  EXPECT_DOUBLE_EQ(prefill_only.average_power_w, 4.0);
  EXPECT_FALSE(nlohmann::json(prefill_only).contains("joules_per_decode_token"));
  EXPECT_TRUE(nlohmann::json(prefill_only).get<EnergyResult>() == prefill_only);
}

}  // namespace
}  // namespace effarch::bench
