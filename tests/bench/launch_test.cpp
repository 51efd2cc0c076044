// Launch settings side by side in one bench run (docs/bench.md, "Side by side in one run"): the
// --backend, --cuda-graphs and --pdl lists, their product, real sweeps on the CPU that run each
// point under each setting on the model loaded once (decode modes; the reference against the CPU
// kernels), a refused setting failing only its own points, the key's pdl (and how files written
// before it read), and compare of one run's settings.

#include <gtest/gtest.h>

#include <fstream>

#include "../test_util.h"
#include "effarch/bench/bench.h"
#include "effarch/common/error.h"

namespace effarch::bench {
namespace {

using nlohmann::json;
using model::DecodeMode;
using Graphs = std::vector<std::optional<DecodeMode>>;

const json kEnv = {{"device", {{"copy_bandwidth_bytes_per_s", 1e10}, {"gemm_flops_per_s", 1e11}}},
                   {"harness_timer_overhead_s", 1e-6}};

// A short sweep on the CPU: one timed run per point, no warm-up.
SweepSpec cpu_sweep(std::vector<std::string> models, std::vector<int64_t> lengths, int64_t gen_tokens) {
  SweepSpec spec;
  spec.models = std::move(models);
  spec.prompt_lengths = std::move(lengths);
  spec.gen_tokens = gen_tokens;
  spec.reps = 1;
  spec.warmup = 0;
  spec.device = "cpu";
  return spec;
}

TEST(BenchLaunch, ListsOfCudaGraphsAndPdl) {
  EXPECT_EQ(parse_cuda_graphs_list("auto", "--cuda-graphs"), Graphs{std::nullopt});
  EXPECT_EQ(parse_cuda_graphs_list("on", "--cuda-graphs"), Graphs{DecodeMode::CudaGraph});
  EXPECT_EQ(parse_cuda_graphs_list("off,static,on", "--cuda-graphs"),
            (Graphs{DecodeMode::Eager, DecodeMode::Static, DecodeMode::CudaGraph}));
  EXPECT_THROW_WITH(parse_cuda_graphs_list("auto,on", "--cuda-graphs"), UsageError,
                    {"--cuda-graphs", "auto is a value on its own", "'auto,on'"});
  EXPECT_THROW_WITH(parse_cuda_graphs_list("off,on,off", "--cuda-graphs"), UsageError,
                    {"--cuda-graphs", "'off' is given twice"});
  EXPECT_THROW_WITH(parse_cuda_graphs_list("off,", "--cuda-graphs"), UsageError, {"--cuda-graphs", "empty value"});
  EXPECT_THROW_WITH(parse_cuda_graphs_list("off,yes", "--cuda-graphs"), UsageError, {"--cuda-graphs", "'yes'"});
  using Pdl = std::vector<std::optional<bool>>;
  EXPECT_EQ(parse_pdl_list("off", "--pdl"), Pdl{false});
  EXPECT_EQ(parse_pdl_list("on,off", "--pdl"), (Pdl{true, false}));
  EXPECT_EQ(parse_pdl_list("auto", "--pdl"), Pdl{std::nullopt});
  EXPECT_THROW_WITH(parse_pdl_list("auto,on", "--pdl"), UsageError, {"--pdl", "auto is a value on its own", "'auto,on'"});
  EXPECT_THROW_WITH(parse_pdl_list("on,on", "--pdl"), UsageError, {"--pdl", "'on' is given twice"});
  EXPECT_THROW_WITH(parse_pdl_list("off,maybe", "x.json: 'pdl'"), UsageError,
                    {"x.json: 'pdl'", "'maybe'", "use auto, on or off"});
  EXPECT_EQ(cuda_graphs_list_name({std::nullopt}), "auto");
  EXPECT_EQ(cuda_graphs_list_name({DecodeMode::Eager, DecodeMode::CudaGraph}), "off,on");
  EXPECT_EQ(pdl_list_name({false, true}), "off,on");
  EXPECT_EQ(pdl_list_name({std::nullopt}), "auto");
  using Backends = std::vector<ops::Backend>;
  EXPECT_EQ(parse_backend_list("reference,auto", "--backend"), (Backends{ops::Backend::Reference, ops::Backend::Auto}));
  EXPECT_EQ(parse_backend_list("cuda", "--backend"), Backends{ops::Backend::Cuda});
  EXPECT_THROW_WITH(parse_backend_list("auto,auto", "--backend"), UsageError, {"--backend", "'auto' is given twice"});
  EXPECT_THROW_WITH(parse_backend_list("auto,gpu", "--backend"), UsageError, {"--backend", "'gpu'"});
  EXPECT_EQ(backend_list_name({ops::Backend::Reference, ops::Backend::Cuda}), "reference,cuda");

  SweepSpec spec;  // the defaults: one setting, auto for each
  ASSERT_EQ(launch_settings(spec).size(), 1u);
  EXPECT_EQ(launch_settings(spec)[0].backend, ops::Backend::Auto);
  EXPECT_FALSE(launch_settings(spec)[0].cuda_graphs);
  EXPECT_FALSE(launch_settings(spec)[0].pdl.has_value());
  spec.backends = {ops::Backend::Reference, ops::Backend::Auto};
  spec.cuda_graphs = {DecodeMode::Eager, DecodeMode::CudaGraph};
  spec.pdl = {false, true};
  const std::vector<LaunchSetting> all = launch_settings(spec);  // backend, graphs, pdl; in the order given
  ASSERT_EQ(all.size(), 8u);
  EXPECT_EQ(all[0].backend, ops::Backend::Reference);
  EXPECT_EQ(all[0].cuda_graphs, DecodeMode::Eager);
  EXPECT_EQ(all[0].pdl, false);
  EXPECT_EQ(all[1].cuda_graphs, DecodeMode::Eager);
  EXPECT_EQ(all[1].pdl, true);
  EXPECT_EQ(all[2].cuda_graphs, DecodeMode::CudaGraph);
  EXPECT_EQ(all[2].pdl, false);
  EXPECT_EQ(all[3].pdl, true);
  EXPECT_EQ(all[3].backend, ops::Backend::Reference);
  EXPECT_EQ(all[4].backend, ops::Backend::Auto);
  EXPECT_EQ(all[4].cuda_graphs, DecodeMode::Eager);
  EXPECT_EQ(all[4].pdl, false);
}

TEST(BenchLaunch, SuiteFilesTakeTheLists) {
  effarch::testing::TempDir dir;
  const std::string path = (dir / "ab.json").string();
  std::ofstream(path) << R"({"name": "ab", "models": ["tiny-llama"], "cuda_graphs": "off,static", "pdl": "off"})";
  const SweepSpec s = load_suite(path, SweepSpec{});
  EXPECT_EQ(s.cuda_graphs, (Graphs{DecodeMode::Eager, DecodeMode::Static}));
  EXPECT_EQ(s.pdl, std::vector<std::optional<bool>>{false});
  std::ofstream(path) << R"({"name": "ab", "models": ["tiny-llama"], "pdl": "on,on"})";
  EXPECT_THROW_WITH(load_suite(path, SweepSpec{}), UsageError, {"ab.json", "'pdl'", "given twice"});
}

// Two modes a CPU runs (eager and the static step): every point under both, back to back, the
// model loaded once; the keys differ in the mode alone, and compare pairs them.
TEST(BenchLaunch, EachPointRunsUnderEverySettingOnTheModelLoadedOnce) {
  SweepSpec spec = cpu_sweep({"tiny-llama", "tiny-mamba"}, {8, 16}, 3);
  spec.reps = 2;
  spec.cuda_graphs = {DecodeMode::Eager, DecodeMode::Static};
  std::vector<std::string> labels;
  RunCallbacks cb;
  size_t announced_total = 0;
  cb.on_start = [&](size_t, size_t total, const std::string& label) {
    labels.push_back(label);
    announced_total = total;
  };
  const std::vector<Point> points = run_sweep(spec, kEnv, cb);
  ASSERT_EQ(points.size(), 8u);
  EXPECT_EQ(announced_total, 8u);
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    EXPECT_EQ(p.status, PointStatus::Ok) << p.key.str() << ": " << p.error;
    EXPECT_EQ(p.key.model, i < 4 ? "tiny-llama" : "tiny-mamba");
    EXPECT_EQ(p.key.prompt_len, i % 4 < 2 ? 8 : 16);
    // Settings innermost: a point's settings are measured next to each other.
    EXPECT_EQ(p.key.cuda_graphs, i % 2 == 0 ? DecodeMode::Eager : DecodeMode::Static) << i;
    EXPECT_FALSE(p.key.pdl);
    EXPECT_NE(labels.at(i).find(i % 2 == 0 ? "backend=auto graphs=off pdl=off" : "backend=auto graphs=static pdl=off"),
              std::string::npos)
        << labels.at(i);
    // One load per model: every point of it carries the same load record.
    ASSERT_TRUE(p.loaded && p.loaded->load);
    EXPECT_EQ(p.loaded->load->seconds, points[i < 4 ? 0 : 4].loaded->load->seconds);
  }
  const json doc = make_document(spec, kEnv, {"effarch", "bench"}, points, false);
  EXPECT_EQ(doc["settings"]["cuda_graphs"], "off,static");
  EXPECT_EQ(doc["settings"]["pdl"], "auto");  // the default, resolved per point (off on the CPU)

  const LaunchSplit split = split_by_launch(doc);
  ASSERT_EQ(split.docs.size(), 2u);
  EXPECT_EQ(split.labels,
            (std::vector<std::string>{"backend=auto graphs=off pdl=off", "backend=auto graphs=static pdl=off"}));
  EXPECT_EQ(split.docs[0]["points"].size(), 4u);
  CompareOptions opt;
  // The CPU's timings swing (tenfold under the sanitizers): the verdicts are checked on the
  // one metric that does not, the peak bytes; the pairing is what is under test.
  opt.metrics = {"peak_bytes"};
  opt.max_regression = 10.0;
  const CompareResult r = compare_launch_settings(doc, "ab.json", opt);
  EXPECT_EQ(r.matched, 4u) << r.report;
  EXPECT_EQ(r.only_base + r.only_new, 0u) << r.report;
  EXPECT_FALSE(r.regressed) << r.report;
  EXPECT_NE(r.report.find("== backend=auto graphs=static pdl=off vs backend=auto graphs=off pdl=off"), std::string::npos)
      << r.report;
  EXPECT_NE(r.report.find("| tiny-mamba float32 b1 p16 g3 cpu graphs=static backend=auto"), std::string::npos)
      << r.report;
  // Without ignoring the setting, nothing pairs: they are different points.
  const CompareResult apart = compare(split.docs[0], {split.docs[1]}, split.labels, opt);
  EXPECT_EQ(apart.matched, 0u);
  EXPECT_EQ(apart.only_base, 4u);

  // One setting: nothing to put side by side, and the message says how to get there.
  const json one = split.docs[0];
  EXPECT_THROW_WITH(compare_launch_settings(one, "one.json", opt), UsageError,
                    {"one.json", "backend=auto graphs=off pdl=off", "--cuda-graphs off,on", "BASE.json and NEW.json"});
}

// --backend reference,auto: the reference and the CPU kernels of one loaded model, point by point;
// each point's key says what ran; compare pairs them; a backend the machine refuses (cuda on the
// CPU) fails its own points with the reason.
TEST(BenchLaunch, BackendsSideBySideOnTheModelLoadedOnce) {
  SweepSpec spec = cpu_sweep({"tiny-mamba"}, {16}, 3);
  spec.backends = {ops::Backend::Reference, ops::Backend::Cuda, ops::Backend::Auto};
  const std::vector<Point> points = run_sweep(spec, kEnv, RunCallbacks{});
  ASSERT_EQ(points.size(), 3u);
  const Point &reference = points[0], &cuda = points[1], &kernels = points[2];
  EXPECT_EQ(reference.key.backend, ops::Backend::Reference);
  EXPECT_EQ(reference.status, PointStatus::Ok) << reference.error;
  EXPECT_EQ(reference.key.implementations.at("selective_scan"), "reference");
  EXPECT_EQ(cuda.key.backend, ops::Backend::Cuda);
  EXPECT_EQ(cuda.status, PointStatus::Error);
  EXPECT_NE(cuda.error.find("--backend cuda"), std::string::npos) << cuda.error;
  EXPECT_TRUE(cuda.key.implementations.empty());  // it never ran
  EXPECT_EQ(kernels.key.backend, ops::Backend::Auto);
  EXPECT_EQ(kernels.status, PointStatus::Ok) << kernels.error;
  EXPECT_EQ(kernels.key.implementations.at("selective_scan"), "cpu");
  EXPECT_EQ(kernels.loaded->load->seconds, reference.loaded->load->seconds);  // one load
  const json doc = make_document(spec, kEnv, {"effarch", "bench"}, points, false);
  EXPECT_EQ(doc["settings"]["backend"], "reference,cuda,auto");
  CompareOptions opt;
  opt.max_regression = 10.0;
  const CompareResult r = compare_launch_settings(doc, "be.json", opt);
  EXPECT_EQ(r.matched, 2u) << r.report;  // reference against cuda (a status change) and against auto
  EXPECT_NE(r.report.find("== backend=auto graphs=off pdl=off vs backend=reference graphs=off pdl=off"),
            std::string::npos)
      << r.report;
  EXPECT_NE(r.report.find("| status | ok | error |"), std::string::npos) << r.report;
}

// A setting the model refuses fails its own points with the reason; the other setting's points
// are measured (CUDA graphs: a CUDA device, and MoE only on the CUDA dispatch).
TEST(BenchLaunch, ARefusedSettingFailsOnlyItsOwnPoints) {
  SweepSpec spec = cpu_sweep({"tiny-mixtral"}, {8}, 2);
  spec.cuda_graphs = {DecodeMode::CudaGraph, DecodeMode::Eager};
  const std::vector<Point> points = run_sweep(spec, kEnv, RunCallbacks{});
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[0].key.cuda_graphs, DecodeMode::CudaGraph);
  EXPECT_EQ(points[0].status, PointStatus::Error);
  EXPECT_NE(points[0].error.find("CUDA"), std::string::npos) << points[0].error;
  EXPECT_EQ(points[1].key.cuda_graphs, DecodeMode::Eager);
  EXPECT_EQ(points[1].status, PointStatus::Ok) << points[1].error;
  EXPECT_TRUE(points[1].speed);
}

TEST(BenchLaunch, PdlListsNeedACudaDevice) {
  SweepSpec spec = cpu_sweep({"tiny-llama"}, {8}, 2);
  spec.pdl = {false, true};
  EXPECT_THROW_WITH(run_sweep(spec, kEnv, RunCallbacks{}), UsageError, {"--pdl off,on", "CUDA kernels only", "cpu"});
}

// The key's pdl: printed where it ran, in the JSON always, part of equality; a key written before
// it existed reads as its run's environment says.
TEST(BenchLaunch, TheKeyRecordsPdlAndOlderFilesTakeTheirEnvironments) {
  PointKey k;
  k.model = "mamba-2.8b";
  k.dtype = k.weights = "bfloat16";
  k.batch = 1;
  k.prompt_len = 512;
  k.gen_tokens = 128;
  k.device = "cuda:0";
  k.cuda_graphs = DecodeMode::CudaGraph;
  EXPECT_EQ(json(k)["pdl"], "off");
  EXPECT_EQ(k.str().find("pdl"), std::string::npos);
  PointKey on = k;
  on.pdl = true;
  EXPECT_NE(on, k);
  EXPECT_TRUE(on.matches(on));
  EXPECT_FALSE(on.matches(k));
  EXPECT_EQ(json(on)["pdl"], "on");
  EXPECT_EQ(json(on).get<PointKey>(), on);
  EXPECT_EQ(on.str(), "mamba-2.8b bfloat16 b1 p512 g128 cuda:0 graphs=on pdl=on backend=auto weights=bfloat16");
  json bad = json(on);
  bad["pdl"] = "yes";
  EXPECT_THROW_WITH(bad.get<PointKey>(), UsageError, {"key.pdl", "'yes'"});

  effarch::testing::TempDir dir;
  for (const char* run : {"on", "off"}) {
    json p = {{"key", json(k)}, {"status", "error"}, {"error", "x"}};
    p["key"].erase("pdl");
    const json older = {{"schema", "effarch-bench"},
                        {"schema_version", kSchemaVersion},
                        {"environment", {{"programmatic_launch", run}}},
                        {"points", {p}}};
    const std::string path = (dir / (std::string(run) + ".json")).string();
    std::ofstream(path) << older.dump();
    EXPECT_EQ(points_of(read_document(path)).at(0).key.pdl, std::string(run) == "on") << run;
  }
}

}  // namespace
}  // namespace effarch::bench
