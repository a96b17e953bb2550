#include "engine/models/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "tests/engine/test_util.h"

namespace tapeloop::engine {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

json Mamba2Json() {
  return json::parse(R"({"model_type":"mamba2","architectures":["Mamba2ForCausalLM"],"hidden_size":32,
    "num_hidden_layers":2,"state_size":8,"expand":2,"head_dim":16,"num_heads":4,"n_groups":2,"conv_kernel":4,
    "vocab_size":61,"layer_norm_epsilon":1e-5,"tie_word_embeddings":true,"use_conv_bias":true,"use_bias":false,
    "residual_in_fp32":true,"time_step_min":0.001,"time_step_max":0.1,"time_step_floor":1e-4,
    "chunk_size":16,"rms_norm":true,"hidden_act":"silu"})");
}

TEST(Config, ParsesMamba2) {
  auto c = ParseModelConfig(Mamba2Json().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, Family::kMamba2);
  EXPECT_EQ(c->mamba_inner(), 64);
  EXPECT_EQ(c->gated_norm_group_size, 64);
  EXPECT_EQ(c->Blocks().size(), 2u);
  EXPECT_EQ(c->dt_min, 0.0f);
  EXPECT_TRUE(std::isinf(c->dt_max));
}

TEST(Config, Mamba2AcceptsHfNormBeforeGateFalseWithoutAWarning) {
  json j = Mamba2Json();
  j["norm_before_gate"] = false;
  ::testing::internal::CaptureStderr();
  auto c = ParseModelConfig(j.dump());
  std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(err.find("norm_before_gate"), std::string::npos) << err;
}

TEST(Config, ParsesPythonInfinityInTimeStepLimit) {
  std::string text = Mamba2Json().dump();
  text.insert(1, "\"time_step_limit\": [0.0, Infinity], ");
  auto c = ParseModelConfig(text);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(std::isinf(c->dt_max));
  // Saved back verbatim.
  EXPECT_EQ(ModelConfigToJson(*c), text);
}

TEST(Config, ParsesLlamaWithRopeParameters) {
  auto c = ParseModelConfig(R"({"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
    "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":61,"rope_parameters":{"rope_type":"default","rope_theta":500.0}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->rope_theta, 500.0);
  EXPECT_EQ(c->Blocks().size(), 4u);
  EXPECT_EQ(c->Blocks()[0], BlockKind::kAttention);
  EXPECT_EQ(c->Blocks()[1], BlockKind::kMlp);
}

TEST(Config, ParsesMistralWindowAndNemotronPattern) {
  auto m = ParseModelConfig(R"({"model_type":"mistral","hidden_size":32,"intermediate_size":48,"num_hidden_layers":1,
    "num_attention_heads":4,"vocab_size":61,"sliding_window":5,"rope_theta":10000.0})");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->sliding_window, 5);
  EXPECT_EQ(m->num_key_value_heads, 4);
  auto n = ParseModelConfig(R"({"model_type":"nemotron_h","hidden_size":32,"vocab_size":61,"hybrid_override_pattern":"M*M-",
    "mamba_num_heads":4,"mamba_head_dim":8,"ssm_state_size":8,"n_groups":2,"conv_kernel":4,"num_attention_heads":4,
    "num_key_value_heads":2,"head_dim":8,"intermediate_size":48,"mlp_hidden_act":"relu2","num_hidden_layers":4})");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->pattern, "M*M-");
  EXPECT_EQ(n->gated_norm_group_size, 16);
  EXPECT_FALSE(n->use_rope);
  EXPECT_EQ(n->dt_min, 0.001f);
  auto l = ParseModelConfig(R"({"model_type":"nemotron_h","hidden_size":32,"vocab_size":61,
    "layers_block_type":["mamba","attention","mlp"],"mamba_num_heads":4,"mamba_head_dim":8,"ssm_state_size":8,
    "mamba_n_groups":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"intermediate_size":48})");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->pattern, "M*-");
}

TEST(Config, ErrorsNameTheKey) {
  struct Case {
    std::string json;
    std::string message;
  };
  json missing = Mamba2Json();
  missing.erase("state_size");
  json bad_type = Mamba2Json();
  bad_type["num_heads"] = "four";
  json inconsistent = Mamba2Json();
  inconsistent["expand"] = 3;
  json groups = Mamba2Json();
  groups["n_groups"] = 3;
  json norm_first = Mamba2Json();
  norm_first["norm_before_gate"] = true;
  std::vector<Case> cases = {
      {norm_first.dump(), "key 'norm_before_gate' = true is not supported"},
      {"{", "not valid JSON"},
      {"[]", "not a JSON object"},
      {R"({"hidden_size": 3})", "key 'model_type' is missing"},
      {R"({"model_type":"gpt2"})", "key 'model_type' = \"gpt2\" is not supported"},
      {missing.dump(), "key 'state_size' is missing"},
      {bad_type.dump(), "key 'num_heads' must be an integer"},
      {inconsistent.dump(), "hidden_size * expand"},
      {groups.dump(), "n_groups"},
      {R"({"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,
          "num_key_value_heads":3,"vocab_size":61})", "num_key_value_heads"},
      {R"({"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,
          "vocab_size":61,"rope_scaling":{"rope_type":"yarn","factor":4}})", "rope_scaling"},
      {R"({"model_type":"nemotron_h","hidden_size":32,"vocab_size":61,"hybrid_override_pattern":"ME"})", "unsupported layer 'E'"},
      {R"({"model_type":"nemotron_h","hidden_size":32,"vocab_size":61,"hybrid_override_pattern":"-","intermediate_size":8,
          "num_hidden_layers":3})", "num_hidden_layers (3)"},
      {R"({"model_type":"nemotron_h","hidden_size":32,"vocab_size":61,"hybrid_override_pattern":"M"})", "key 'mamba_num_heads' is missing"},
      {R"({"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,
          "vocab_size":-5})", "key 'vocab_size' must be a positive integer"},
  };
  for (const Case& c : cases) {
    auto r = ParseModelConfig(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message)) << c.json;
  }
}

TEST(Config, UnknownKeysAreIgnored) {
  json j = Mamba2Json();
  j["some_future_key"] = 3;
  auto c = ParseModelConfig(j.dump());
  EXPECT_TRUE(c.ok()) << c.status();
}

TEST(Config, GeneratedJsonParsesBackForEveryFamily) {
  for (Family f : testing::AllFamilies()) {
    ModelConfig c = testing::TinyConfig(f);
    ASSERT_TRUE(ValidateModelConfig(c).ok()) << FamilyName(f);
    auto back = ParseModelConfig(ModelConfigToJson(c));
    ASSERT_TRUE(back.ok()) << FamilyName(f) << ": " << back.status();
    EXPECT_EQ(back->Blocks(), c.Blocks());
    EXPECT_EQ(back->hidden_size, c.hidden_size);
    EXPECT_EQ(back->sliding_window, c.sliding_window);
    EXPECT_EQ(back->gated_norm_group_size, c.gated_norm_group_size);
    EXPECT_EQ(back->dt_min, c.dt_min);
    EXPECT_EQ(back->tie_word_embeddings, c.tie_word_embeddings);
    EXPECT_EQ(back->attention_bias, c.attention_bias);
  }
}

}  // namespace
}  // namespace tapeloop::engine
