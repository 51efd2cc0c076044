// config.json parsing: every built-in config parses; bad configs fail naming the key.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <cmath>

#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "effarch/common/error.h"
#include "effarch/io/strict_json.h"
#include "effarch/model/config.h"

namespace effarch::model {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using effarch::testing::configs_dir;

json tiny_llama() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "float32"})");
}

ModelConfig parse(const json& j) { return parse_config(j, "test-config.json"); }

TEST(Config, EveryBuiltinConfigParses) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(configs_dir() / "models")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    const ModelConfig c = load_config(entry.path());
    EXPECT_EQ(static_cast<int64_t>(c.layers.size()), c.num_layers);
    ++n;
  }
  EXPECT_GE(n, 18u);  // 8 real models + 10 tiny ones
}

TEST(Config, Llama31HasLlama3RopeScaling) {
  const ModelConfig c = load_config(configs_dir() / "models" / "llama-3.1-8b.json");
  ASSERT_TRUE(c.attention && c.attention->rope);
  EXPECT_EQ(c.attention->rope->type, "llama3");
  EXPECT_DOUBLE_EQ(c.attention->rope->factor, 8.0);
  EXPECT_EQ(c.attention->rope->original_max_position, 8192);
  EXPECT_EQ(c.attention->rope->rotary_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 131072);
}

TEST(Config, PhiPartialRotary) {
  const ModelConfig c = load_config(configs_dir() / "models" / "phi-2.json");
  EXPECT_EQ(c.attention->head_dim, 80);
  EXPECT_EQ(c.attention->rope->rotary_dim, 32);
  EXPECT_TRUE(c.parallel_block);
  EXPECT_EQ(c.norm, NormKind::LayerNorm);
  EXPECT_EQ(c.torch_dtype, at::kHalf);
}

TEST(Config, JambaLayout) {
  const ModelConfig c = load_config(configs_dir() / "models" / "jamba-v0.1.json");
  ASSERT_EQ(c.num_layers, 32);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(c.layers[i].mixer, i % 8 == 4 ? MixerKind::Attention : MixerKind::Mamba1) << i;
    EXPECT_EQ(c.layers[i].ffn, i % 2 == 1 ? FfnKind::MoE : FfnKind::Dense) << i;
  }
  EXPECT_FALSE(c.attention->rope.has_value());  // Jamba attention has no positional encoding
  EXPECT_EQ(c.mamba->dt_rank, 256);
  EXPECT_EQ(c.mamba->dt_bc_norm, MambaConfig::DtBCNorm::Learned);
  EXPECT_EQ(c.moe->router, RouterKind::SoftmaxFp32);
}

TEST(Config, DeepseekFirstLayerDense) {
  const ModelConfig c = load_config(configs_dir() / "models" / "deepseek-moe-16b.json");
  EXPECT_EQ(c.layers[0].ffn, FfnKind::Dense);
  for (int i = 1; i < c.num_layers; ++i) EXPECT_EQ(c.layers[i].ffn, FfnKind::MoE) << i;
  EXPECT_EQ(c.moe->num_shared_experts, 2);
  EXPECT_EQ(c.moe->router, RouterKind::SoftmaxModelDtype);
}

TEST(Config, MambaDefaults) {
  const ModelConfig c = load_config(configs_dir() / "models" / "mamba-2.8b.json");
  EXPECT_TRUE(c.tie_word_embeddings);  // absent key: tied, as in HF
  EXPECT_TRUE(c.residual_in_fp32);
  EXPECT_EQ(c.mamba->d_inner, 5120);
  EXPECT_EQ(c.mamba->dt_rank, 160);
  EXPECT_FALSE(c.max_position_embeddings.has_value() && c.attention.has_value());
}

TEST(Config, Mamba2Groups) {
  const ModelConfig c = load_config(configs_dir() / "models" / "mamba-codestral-7b.json");
  EXPECT_EQ(c.mamba->version, 2);
  EXPECT_EQ(c.mamba->conv_dim(), 10240);
  EXPECT_EQ(c.mamba->n_groups, 8);
}

TEST(Config, Mamba2TimeStepLimitAsTransformers5WritesIt) {
  // save_pretrained in transformers 5 writes infinity as {"__float__": "Infinity"}.
  json j = io::read_json_file(configs_dir() / "models" / "tiny-mamba2.json");
  j["time_step_limit"] = json::parse(R"([0.0, {"__float__": "Infinity"}])");
  const ModelConfig c = parse(j);
  EXPECT_TRUE(std::isinf(c.mamba->time_step_max));
  EXPECT_FALSE(c.mamba->time_step_clamped);
  j["time_step_limit"] = json::parse(R"([0.001, 0.5])");
  EXPECT_TRUE(parse(j).mamba->time_step_clamped);
  j["time_step_limit"] = json::parse(R"([0.0, {"__float__": "NaN"}])");
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'time_step_limit'", "NaN"});
}

TEST(ConfigErrors, UnknownArchitecture) {
  json j = tiny_llama();
  j["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_THROW_WITH(parse(j), ConfigError,
                    {"test-config.json", "'architectures'", "GPT2LMHeadModel", "LlamaForCausalLM", "JambaForCausalLM"});
}

TEST(ConfigErrors, MissingKey) {
  for (const char* key : {"hidden_size", "vocab_size", "num_attention_heads", "intermediate_size", "architectures"}) {
    SCOPED_TRACE(key);
    json j = tiny_llama();
    j.erase(key);
    EXPECT_THROW_WITH(parse(j), ConfigError, {"test-config.json", std::string("'") + key + "'", "missing"});
  }
}

TEST(ConfigErrors, NullCountsAsMissing) {
  json j = tiny_llama();
  j["num_hidden_layers"] = nullptr;
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'num_hidden_layers'", "missing"});
}

TEST(ConfigErrors, IllTyped) {
  json j = tiny_llama();
  j["num_hidden_layers"] = "2";
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'num_hidden_layers'", "must be an integer", "string"});
  j = tiny_llama();
  j["hidden_size"] = 64.5;
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'hidden_size'", "must be an integer"});
  j = tiny_llama();
  j["tie_word_embeddings"] = "yes";
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'tie_word_embeddings'", "true or false"});
  j = tiny_llama();
  j["torch_dtype"] = "int8";
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'torch_dtype'", "int8"});
}

TEST(ConfigErrors, ImpossibleValues) {
  json j = tiny_llama();
  j["num_hidden_layers"] = -2;
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'num_hidden_layers'", "must be positive"});
  j = tiny_llama();
  j["num_attention_heads"] = 5;
  j["num_key_value_heads"] = 5;
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'num_attention_heads'", "do not divide hidden_size 64"});
  j = tiny_llama();
  j["num_key_value_heads"] = 3;
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'num_key_value_heads'", "3 kv heads do not divide 4"});
  j = tiny_llama();
  j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 4.0}};
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'rope_scaling'", "longrope", "not supported"});
  j = tiny_llama();
  j["rope_scaling"] = {{"rope_type", "linear"}};
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'factor'", "missing"});
}

// An odd head size with the whole head rotated is the head size's fault, not partial_rotary_factor's
// (which it was once blamed on, absent or 1.0): named as the config gives it, hidden_size /
// num_attention_heads or head_dim. partial_rotary_factor only when its fraction makes the count odd.
TEST(ConfigErrors, OddRotaryDimsBlameWhatMadeThem) {
  const auto message = [](const json& j) -> std::string {
    try {
      (void)parse(j);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  json j = tiny_llama();
  j["hidden_size"] = 36;
  j["num_key_value_heads"] = 4;  // head_dim 9
  for (const json& partial : {json(), json(1.0)}) {
    if (!partial.is_null()) j["partial_rotary_factor"] = partial;
    const std::string m = message(j);
    EXPECT_NE(m.find("key 'num_attention_heads': head_dim = hidden_size / num_attention_heads = 36 / 4 = 9 is odd"),
              std::string::npos)
        << m;
    EXPECT_EQ(m.find("partial_rotary_factor"), std::string::npos) << m;
  }
  j = tiny_llama();
  j["head_dim"] = 15;
  std::string m = message(j);
  EXPECT_NE(m.find("key 'head_dim': 15 is odd"), std::string::npos) << m;
  EXPECT_EQ(m.find("partial_rotary_factor"), std::string::npos) << m;
  j = io::read_json_file(configs_dir() / "models" / "tiny-phi.json");  // head_dim 40: half is 20 dims, 0.525 is 21
  j["partial_rotary_factor"] = 0.525;
  m = message(j);
  EXPECT_NE(m.find("key 'partial_rotary_factor': 0.525 of head_dim 40 gives 21 rotary dims"), std::string::npos) << m;
  j["partial_rotary_factor"] = 0.5;
  EXPECT_EQ(parse(j).attention->rope->rotary_dim, 20);
}

// Where a key is in rope_parameters and at the top level too, rope_parameters' wins (transformers'
// standardize_rope_params moves the top level's in only where the dict has none); absent from both,
// the config class's default (the parity fixtures NAME-defaults check every family's against
// transformers).
TEST(Config, RopeKeysInRopeParametersWinOverTheTopLevel) {
  json phi = io::read_json_file(configs_dir() / "models" / "tiny-phi.json");  // head_dim 40
  phi["partial_rotary_factor"] = 1.0;
  phi["rope_theta"] = 500.0;
  phi["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 700.0}, {"partial_rotary_factor", 0.4}};
  ModelConfig c = parse(phi);
  EXPECT_EQ(c.attention->rope->rotary_dim, 16);
  EXPECT_EQ(c.attention->rope->theta, 700.0);
  phi.erase("rope_parameters");
  phi.erase("partial_rotary_factor");
  phi.erase("rope_theta");
  c = parse(phi);
  EXPECT_EQ(c.attention->rope->rotary_dim, 20);  // PhiConfig's 0.5
  EXPECT_EQ(c.attention->rope->theta, 10000.0);
  json mixtral = io::read_json_file(configs_dir() / "models" / "tiny-mixtral.json");
  mixtral.erase("rope_theta");
  EXPECT_EQ(parse(mixtral).attention->rope->theta, 1e6);  // MixtralConfig's default_theta
  // A non-empty rope_scaling replaces rope_parameters (5.23's convert_rope_params_to_dict).
  phi["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 700.0}, {"partial_rotary_factor", 0.4}};
  phi["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 900.0}};
  c = parse(phi);
  EXPECT_EQ(c.attention->rope->theta, 900.0);
  EXPECT_EQ(c.attention->rope->rotary_dim, 20);  // rope_parameters' 0.4 gone with it: PhiConfig's 0.5
  EXPECT_EQ(c.attention->rope->type, "linear");
}

// The names a config class's attribute_map gives a field are read too: Mixtral's num_experts,
// Jamba's num_local_experts; both given and different is refused.
TEST(Config, ExpertCountAliases) {
  json mixtral = io::read_json_file(configs_dir() / "models" / "tiny-mixtral.json");
  mixtral.erase("num_local_experts");
  mixtral["num_experts"] = 4;
  EXPECT_EQ(parse(mixtral).moe->num_experts, 4);
  mixtral["num_local_experts"] = 6;
  EXPECT_THROW_WITH(parse(mixtral), ConfigError, {"'num_local_experts'", "'num_experts'"});
  json jamba = io::read_json_file(configs_dir() / "models" / "tiny-jamba.json");
  jamba.erase("num_experts");
  jamba["num_local_experts"] = 8;
  EXPECT_EQ(parse(jamba).moe->num_experts, 8);
}

// Every field that changes the computation and that effarch does not implement is refused at
// parse time, naming the key (docs/architectures.md lists the audit).
TEST(ConfigErrors, UnimplementedFieldsAreRefusedByName) {
  json j = tiny_llama();
  j["hidden_act"] = "xielu";
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'hidden_act'", "xielu", "not supported", "gelu_pytorch_tanh"});
  j = tiny_llama();
  j["hidden_act"] = "prelu";
  EXPECT_THROW_WITH(parse(j), ConfigError, {"'hidden_act'", "prelu"});
  json mamba = io::read_json_file(configs_dir() / "models" / "tiny-mamba.json");
  mamba["hidden_act"] = "no_such_act";
  EXPECT_THROW_WITH(parse(mamba), ConfigError, {"'hidden_act'", "no_such_act"});
  mamba = io::read_json_file(configs_dir() / "models" / "tiny-mamba.json");
  mamba["conv_kernel"] = 5;
  EXPECT_THROW_WITH(parse(mamba), ConfigError, {"'conv_kernel'", "conv width 5", "2, 3 or 4"});
  json mamba2 = io::read_json_file(configs_dir() / "models" / "tiny-mamba2.json");
  mamba2["conv_kernel"] = 1;
  EXPECT_THROW_WITH(parse(mamba2), ConfigError, {"'conv_kernel'", "conv width 1"});
  json jamba = io::read_json_file(configs_dir() / "models" / "tiny-jamba.json");
  jamba["mamba_d_conv"] = 8;
  EXPECT_THROW_WITH(parse(jamba), ConfigError, {"'mamba_d_conv'", "conv width 8"});
  jamba = io::read_json_file(configs_dir() / "models" / "tiny-jamba.json");
  jamba["hidden_act"] = "xielu";
  EXPECT_THROW_WITH(parse(jamba), ConfigError, {"'hidden_act'", "xielu"});
  // A fraction of the head rotated: Phi only. transformers 5.23's Llama-family classes ignore it
  // (or fail), so for them it is refused; 1.0 is the whole head, as without the key.
  for (const char* name : {"tiny-llama", "tiny-llama3", "tiny-mistral", "tiny-mixtral", "tiny-deepseek-moe"}) {
    json cfg = io::read_json_file(configs_dir() / "models" / (std::string(name) + ".json"));
    cfg["partial_rotary_factor"] = 0.5;
    EXPECT_THROW_WITH(parse(cfg), ConfigError, {"'partial_rotary_factor'", "0.5 is not supported", "only Phi"});
    cfg["partial_rotary_factor"] = 1.0;
    EXPECT_NO_THROW(parse(cfg)) << name;
  }
  json nested = tiny_llama();  // transformers 5 keeps it inside rope_parameters
  nested["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}, {"partial_rotary_factor", 0.25}};
  EXPECT_THROW_WITH(parse(nested), ConfigError, {"'partial_rotary_factor'", "0.25 is not supported"});
  json huge = tiny_llama();  // sizes past an int (a vocabulary of 2^57 wrapped the parameter count)
  huge["vocab_size"] = int64_t{1} << 57;
  EXPECT_THROW_WITH(parse(huge), ConfigError, {"'vocab_size'", "past any model's size"});
  huge = tiny_llama();
  huge["num_hidden_layers"] = 1000000;
  EXPECT_THROW_WITH(parse(huge), ConfigError, {"'num_hidden_layers'", "at most 65536"});
  json quantised = tiny_llama();
  quantised["quantization_config"] = {{"quant_method", "bitsandbytes"}, {"load_in_8bit", true}};
  EXPECT_THROW_WITH(parse(quantised), ConfigError, {"'quantization_config'", "bitsandbytes", "--weights int8"});
  for (const char* name : {"tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2"}) {
    json cfg = io::read_json_file(configs_dir() / "models" / (std::string(name) + ".json"));
    cfg["rescale_prenorm_residual"] = true;
    EXPECT_THROW_WITH(parse(cfg), ConfigError, {"'rescale_prenorm_residual'", "out_proj", "mamba_ssm"});
  }
  json phi = io::read_json_file(configs_dir() / "models" / "tiny-phi.json");
  phi["qk_layernorm"] = true;
  EXPECT_THROW_WITH(parse(phi), ConfigError, {"'qk_layernorm'", "not supported"});
  json deepseek = io::read_json_file(configs_dir() / "models" / "tiny-deepseek-moe.json");
  deepseek["norm_topk_prob"] = true;
  EXPECT_THROW_WITH(parse(deepseek), ConfigError, {"'norm_topk_prob'"});
  deepseek = io::read_json_file(configs_dir() / "models" / "tiny-deepseek-moe.json");
  deepseek["scoring_func"] = "sigmoid";
  EXPECT_THROW_WITH(parse(deepseek), ConfigError, {"'scoring_func'", "sigmoid"});
  deepseek = io::read_json_file(configs_dir() / "models" / "tiny-deepseek-moe.json");
  deepseek["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};
  EXPECT_THROW_WITH(parse(deepseek), ConfigError, {"'rope_scaling'", "yarn", "DeepSeekMoE"});
  mamba2 = io::read_json_file(configs_dir() / "models" / "tiny-mamba2.json");
  mamba2["time_step_limit"] = {0.1, 0.05};
  EXPECT_THROW_WITH(parse(mamba2), ConfigError, {"'time_step_limit'"});
}

// Keys read per architecture as transformers' config classes and modeling code read them.
TEST(Config, KeysAsTransformersReadsThem) {
  json mistral = io::read_json_file(configs_dir() / "models" / "tiny-mistral.json");
  EXPECT_FALSE(parse(mistral).attention->sliding_window.has_value());  // null: no window
  mistral.erase("sliding_window");
  EXPECT_EQ(parse(mistral).attention->sliding_window, 4096);  // MistralConfig's default
  mistral["sliding_window"] = 5;
  mistral["attention_bias"] = true;  // not a Mistral key: transformers builds no biases
  const ModelConfig m = parse(mistral);
  EXPECT_EQ(m.attention->sliding_window, 5);
  EXPECT_FALSE(m.attention->qkv_bias);
  mistral.erase("num_key_value_heads");
  EXPECT_EQ(parse(mistral).attention->num_kv_heads, 8);
  json llama = tiny_llama();
  llama["sliding_window"] = 4;  // LlamaConfig has no sliding window
  llama["attention_bias"] = true;
  EXPECT_FALSE(parse(llama).attention->sliding_window.has_value());
  EXPECT_TRUE(parse(llama).attention->qkv_bias);
  json mixtral = io::read_json_file(configs_dir() / "models" / "tiny-mixtral.json");
  mixtral["sliding_window"] = 3;
  mixtral["hidden_act"] = "gelu_new";
  EXPECT_EQ(parse(mixtral).attention->sliding_window, 3);
  EXPECT_EQ(parse(mixtral).mlp->activation, Activation::GeluNew);
  json mamba = io::read_json_file(configs_dir() / "models" / "tiny-mamba.json");
  mamba["hidden_act"] = "gelu_pytorch_tanh";
  mamba["rms_norm"] = false;  // not read by transformers 5.23
  EXPECT_EQ(parse(mamba).mamba->activation, Activation::GeluTanh);
  json jamba = io::read_json_file(configs_dir() / "models" / "tiny-jamba.json");
  jamba["hidden_act"] = "relu";
  EXPECT_EQ(parse(jamba).mamba->activation, Activation::Relu);
  EXPECT_EQ(parse(jamba).mlp->activation, Activation::Relu);
  json mamba2 = io::read_json_file(configs_dir() / "models" / "tiny-mamba2.json");
  mamba2.erase("n_groups");
  mamba2["num_heads"] = 8;
  EXPECT_EQ(parse(mamba2).mamba->n_groups, 8);  // Mamba2Config's default
}

// The keys no logit shows: the EOS ids generation stops at (an integer or a list, as the Hub's
// files write them; cli_generate checks the stop itself) and the weights' dtype under either name.
TEST(Config, EosIdsAndDtypeKeys) {
  json llama = tiny_llama();
  llama["eos_token_id"] = 7;
  EXPECT_EQ(parse(llama).eos_token_ids, (std::vector<int64_t>{7}));
  llama["eos_token_id"] = json::array({128001, 128009});  // Llama-3-Instruct's
  EXPECT_EQ(parse(llama).eos_token_ids, (std::vector<int64_t>{128001, 128009}));
  EXPECT_TRUE(parse(llama).eos_given);
  llama["eos_token_id"] = nullptr;  // the model says: none
  EXPECT_TRUE(parse(llama).eos_token_ids.empty());
  EXPECT_TRUE(parse(llama).eos_given);
  llama.erase("eos_token_id");
  EXPECT_TRUE(parse(llama).eos_token_ids.empty());
  EXPECT_FALSE(parse(llama).eos_given);  // generate falls back on the tokenizer's EOS
  llama["eos_token_id"] = json::array({1, "2"});
  EXPECT_THROW_WITH(parse(llama), ConfigError, {"eos_token_id", "integers"});
  json v5 = tiny_llama();
  v5.erase("torch_dtype");
  v5["dtype"] = "bfloat16";  // transformers 5 writes "dtype"
  EXPECT_EQ(parse(v5).torch_dtype, at::kBFloat16);
  v5["torch_dtype"] = "float16";  // both: transformers 5.23 takes "dtype"
  EXPECT_EQ(parse(v5).torch_dtype, at::kBFloat16);
  v5.erase("dtype");
  v5.erase("torch_dtype");
  EXPECT_EQ(parse(v5).torch_dtype, at::kFloat);
}

// generation_config.json's eos_token_id replaces the config's (absent or null: none), as
// transformers' generate reads the file alone where there is one.
TEST(Config, GenerationConfigEosReplacesTheConfigs) {
  const fs::path dir = fs::temp_directory_path() / "effarch_generation_config_test";
  fs::create_directories(dir);
  const auto with = [&](const std::string& text) {
    std::ofstream(dir / "generation_config.json") << text;
    return generation_config_eos(dir / "generation_config.json");
  };
  EXPECT_EQ(with(R"({"eos_token_id": [128001, 128009]})"), (std::vector<int64_t>{128001, 128009}));
  EXPECT_EQ(with(R"({"eos_token_id": 7})"), (std::vector<int64_t>{7}));
  EXPECT_TRUE(with(R"({"eos_token_id": null})").empty());
  EXPECT_TRUE(with(R"({"bos_token_id": 1})").empty());
  EXPECT_THROW_WITH(with(R"({"eos_token_id": ["x"]})"), ConfigError, {"generation_config.json", "eos_token_id"});
  EXPECT_THROW_WITH(with("{"), FormatError, {"generation_config.json"});
  fs::remove_all(dir);
}

TEST(Config, RopeScalingTypes) {
  json j = tiny_llama();
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
  EXPECT_EQ(parse(j).attention->rope->type, "linear");
  EXPECT_DOUBLE_EQ(parse(j).attention->rope->factor, 4.0);
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  EXPECT_EQ(parse(j).attention->rope->type, "dynamic");
  EXPECT_EQ(parse(j).attention->rope->max_position, 256);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  const ops::RopeParams yarn = *parse(j).attention->rope;
  EXPECT_EQ(yarn.original_max_position, 256);  // defaults to max_position_embeddings
  EXPECT_DOUBLE_EQ(yarn.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(yarn.beta_slow, 1.0);
  EXPECT_NEAR(ops::rope_attention_factor(yarn), 0.1 * std::log(4.0) + 1.0, 1e-12);
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_EQ(parse(j).attention->rope->original_max_position, 256);  // transformers 5.23's default
}

TEST(ConfigErrors, MoeAndHybridRules) {
  json mixtral = io::read_json_file(configs_dir() / "models" / "tiny-mixtral.json");
  mixtral["num_experts_per_tok"] = mixtral["num_local_experts"].get<int>() + 1;
  EXPECT_THROW_WITH(parse(mixtral), ConfigError, {"'num_experts_per_tok'", "exceeds"});
  json jamba = io::read_json_file(configs_dir() / "models" / "tiny-jamba.json");
  jamba["attn_layer_offset"] = jamba["attn_layer_period"];
  EXPECT_THROW_WITH(parse(jamba), ConfigError, {"'attn_layer_offset'", "must be <"});
  json mamba2 = io::read_json_file(configs_dir() / "models" / "tiny-mamba2.json");
  mamba2["head_dim"] = mamba2["head_dim"].get<int>() + 1;
  EXPECT_THROW_WITH(parse(mamba2), ConfigError, {"'num_heads'", "must equal"});
}

TEST(ConfigErrors, NotAnObjectAndBadJson) {
  EXPECT_THROW_WITH(parse(json::array()), ConfigError, {"must be a JSON object"});
  EXPECT_THROW_WITH(io::parse_strict_json(R"({"a": 1, "a": 2})", "c.json"), FormatError, {"c.json", "duplicate key 'a'"});
  EXPECT_THROW_WITH(io::parse_strict_json(R"({"a": )", "c.json"), FormatError, {"c.json", "invalid JSON"});
}

}  // namespace
}  // namespace effarch::model
