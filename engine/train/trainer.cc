#include "engine/train/trainer.h"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "engine/check.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/models/config.h"
#include "engine/models/model.h"

namespace tapeloop::engine::train {
namespace {

constexpr char kStateFormat[] = "tapeloop-trainer-state-v1";

// Splits items (with costs) over `threads` workers: longest first to the least loaded worker.
std::vector<std::vector<int>> Assign(const std::vector<int64_t>& cost, int threads) {
  std::vector<int> order(cost.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cost[a] > cost[b]; });
  std::vector<std::vector<int>> out(threads);
  std::vector<int64_t> load(threads, 0);
  for (int i : order) {
    const int w = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    out[w].push_back(i);
    load[w] += cost[i];
  }
  return out;
}

// Runs fn(worker) on `threads` threads (the caller runs worker 0).
template <typename Fn>
void RunWorkers(int threads, Fn fn) {
  std::vector<std::thread> pool;
  for (int w = 1; w < threads; ++w) pool.emplace_back([&fn, w] { fn(w); });
  fn(0);
  for (auto& t : pool) t.join();
}

uint64_t Fnv1a(uint64_t h, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

std::string TrainOptions::Fingerprint(const RowModel& m) const {
  return absl::StrFormat(
      "%s | steps=%d batch=%d lr=%g warmup=%d clip=%g betas=%g,%g adam_eps=%g wd=%g "
      "decay_all=%d threads=%d seed=%d init_state=%d noise=%g concat=%d window=%d",
      m.Describe(), steps, batch, lr, warmup, clip, adam.beta1, adam.beta2, adam.eps,
      adam.weight_decay, adam.decay_all ? 1 : 0, threads, seed, static_cast<int>(init_state),
      noise_std, tbptt_concat, tbptt_window);
}

Trainer::Trainer(std::unique_ptr<RowModel> model, const TrainOptions& options, ExampleSource* data)
    : model_(std::move(model)),
      options_(options),
      data_(data),
      adam_(model_->table(), options.adam),
      rng_(options.seed) {
  TL_CHECK(options_.threads >= 1 && options_.batch >= 1 && options_.tbptt_concat >= 1);
  // Rows are spread over our own threads; each BLAS call stays on its caller's thread.
  openblas_set_num_threads(1);
  Rng init_rng(options.seed);
  params_ = model_->table().Initialize(init_rng);
  grads_.assign(params_.size(), 0.f);
  rng_ = init_rng.Fork(1);
  workspaces_.resize(options_.threads);
  thread_grads_.assign(options_.threads, std::vector<float>(params_.size(), 0.f));
}

StepStats Trainer::Step() {
  const int B = options_.batch, concat = options_.tbptt_concat;
  const int64_t S = model_->state_size();
  std::vector<TrainExample> ex = data_->Next(B * concat);
  TL_CHECK(static_cast<int>(ex.size()) == B * concat);
  // Rows: `concat` trajectories back to back.
  std::vector<TrainExample> rows(B);
  std::vector<int64_t> cost(B);
  double denom = 0;
  int64_t tokens = 0;
  for (int r = 0; r < B; ++r) {
    for (int k = 0; k < concat; ++k) {
      const TrainExample& e = ex[r * concat + k];
      TL_CHECK(e.tokens.size() == e.loss_mask.size());
      rows[r].tokens.insert(rows[r].tokens.end(), e.tokens.begin(), e.tokens.end());
      rows[r].loss_mask.insert(rows[r].loss_mask.end(), e.loss_mask.begin(), e.loss_mask.end());
    }
    TL_CHECK(rows[r].tokens.size() >= 2);
    for (size_t i = 1; i < rows[r].loss_mask.size(); ++i) denom += rows[r].loss_mask[i];
    cost[r] = static_cast<int64_t>(rows[r].tokens.size());
    tokens += cost[r] - 1;
  }
  denom = std::max(denom, 1.0);

  // Initial states.
  last_init_.assign(B * S, 0.f);
  last_final_.assign(B * S, 0.f);
  bool use_init = false;
  if (options_.init_state == InitState::kNoise) {
    use_init = S > 0;
    for (int r = 0; r < B && use_init; ++r)
      model_->NoiseState(rng_, options_.noise_std, last_init_.data() + r * S);
  } else if (options_.init_state == InitState::kPassFinal && !pool_.empty() && S > 0) {
    use_init = true;
    std::vector<int> perm(B);
    std::iota(perm.begin(), perm.end(), 0);
    for (int i = B - 1; i > 0; --i) std::swap(perm[i], perm[rng_.UniformInt(0, i)]);
    for (int r = 0; r < B; ++r)
      if (S > 0)
        std::memcpy(last_init_.data() + r * S, pool_.data() + perm[r] * S, sizeof(float) * S);
  }

  std::vector<RowResult> results(B);
  const auto assignment = Assign(cost, options_.threads);
  const int64_t window = options_.tbptt_window;
  RunWorkers(options_.threads, [&](int w) {
    std::vector<float>& g = thread_grads_[w];
    std::fill(g.begin(), g.end(), 0.f);
    std::vector<float> carry(S), next(S);
    std::vector<float> mask;
    for (int r : assignment[w]) {
      const TrainExample& row = rows[r];
      const int64_t T = static_cast<int64_t>(row.tokens.size()) - 1;
      const int64_t W = window > 0 ? window : T;
      const float* init = use_init ? last_init_.data() + r * S : nullptr;
      RowResult acc;
      for (int64_t s = 0; s < T; s += W) {
        const int64_t e = std::min(T, s + W);
        mask.assign(row.loss_mask.begin() + s + 1, row.loss_mask.begin() + e + 1);
        RowResult rr = model_->RowForwardBackward(
            params_.data(), std::span<const int32_t>(row.tokens.data() + s, e - s + 1), mask, denom,
            init, next.data(), g.data(), &workspaces_[w]);
        acc.loss_sum += rr.loss_sum;
        acc.counted += rr.counted;
        acc.correct += rr.correct;
        std::swap(carry, next);
        init = carry.data();
      }
      if (S > 0) std::memcpy(last_final_.data() + r * S, carry.data(), sizeof(float) * S);
      results[r] = acc;
    }
  });
  // Sum the workers' gradients in a fixed order (worker 0's, then 1's, ... for every element;
  // the elements are split over the threads).
  const int64_t n = static_cast<int64_t>(grads_.size());
  RunWorkers(options_.threads, [&](int w) {
    const int64_t lo = n * w / options_.threads, hi = n * (w + 1) / options_.threads;
    std::copy(thread_grads_[0].begin() + lo, thread_grads_[0].begin() + hi, grads_.begin() + lo);
    for (int k = 1; k < options_.threads; ++k) {
      const float* g = thread_grads_[k].data();
      for (int64_t i = lo; i < hi; ++i) grads_[i] += g[i];
    }
  });
  StepStats st;
  for (const RowResult& r : results) {
    st.loss += r.loss_sum;
    st.targets += r.counted;
    st.token_acc += r.correct;
  }
  st.loss /= denom;
  st.token_acc = st.targets ? st.token_acc / st.targets : 0;
  st.tokens = tokens;
  st.grad_norm = options_.clip > 0 ? ClipGradNorm(grads_, options_.clip) : GradNorm(grads_);
  st.lr = WarmupCosineLr(options_.lr, step_, options_.warmup, options_.steps);
  adam_.Step(params_, grads_, static_cast<float>(st.lr), options_.threads);
  ++step_;
  st.step = step_;
  if (options_.init_state == InitState::kPassFinal) pool_ = last_final_;
  return st;
}

EvalStats Trainer::Evaluate(const std::vector<TrainExample>& examples) const {
  const int n = static_cast<int>(examples.size());
  std::vector<int64_t> cost(n);
  for (int i = 0; i < n; ++i) cost[i] = static_cast<int64_t>(examples[i].tokens.size());
  std::vector<RowResult> results(n);
  const auto assignment = Assign(cost, options_.threads);
  RunWorkers(options_.threads, [&](int w) {
    std::vector<float> mask;
    for (int i : assignment[w]) {
      const TrainExample& e = examples[i];
      mask.assign(e.loss_mask.begin() + 1, e.loss_mask.end());
      results[i] = model_->RowForwardBackward(params_.data(), e.tokens, mask, 1.0, nullptr, nullptr,
                                              nullptr, &workspaces_[w]);
    }
  });
  EvalStats st;
  int64_t counted = 0, correct = 0;
  for (const RowResult& r : results) {
    ++st.examples;
    st.exact += (r.correct == r.counted);
    counted += r.counted;
    correct += r.correct;
    st.loss += r.loss_sum;
  }
  st.token_acc = counted ? double(correct) / counted : 0;
  st.loss = counted ? st.loss / counted : 0;
  return st;
}

absl::Status Trainer::SaveCheckpoint(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("save checkpoint: cannot create '", dir, "': ", ec.message()));
  // The model through the engine (HF config.json + model.safetensors).
  ASSIGN_OR_RETURN(ModelConfig mc, ParseModelConfig(model_->HfConfigJson()));
  std::map<std::string, Tensor> tensors;
  const ParamTable& t = model_->table();
  for (int i = 0; i < t.size(); ++i) {
    Tensor x;
    x.shape = t.spec(i).shape;
    x.data.assign(params_.begin() + t.offset(i), params_.begin() + t.offset(i) + t.numel(i));
    tensors[t.spec(i).name] = std::move(x);
  }
  ASSIGN_OR_RETURN(auto model, Model::FromTensors(mc, std::move(tensors)));
  RETURN_IF_ERROR(model->Save(dir));
  // Trainer state.
  uint64_t sum = 0xcbf29ce484222325ULL;
  sum = Fnv1a(sum, params_.data(), params_.size() * sizeof(float));
  sum = Fnv1a(sum, adam_.m().data(), adam_.m().size() * sizeof(float));
  sum = Fnv1a(sum, adam_.v().data(), adam_.v().size() * sizeof(float));
  sum = Fnv1a(sum, pool_.data(), pool_.size() * sizeof(float));
  const auto& rs = rng_.state();
  std::map<std::string, std::string> meta = {
      {"format", kStateFormat},
      {"step", absl::StrCat(step_)},
      {"adam_step", absl::StrCat(adam_.step())},
      {"data_position", absl::StrCat(data_->position())},
      {"rng", absl::StrCat(rs[0], ",", rs[1], ",", rs[2], ",", rs[3])},
      {"fingerprint", options_.Fingerprint(*model_)},
      {"checksum", absl::StrCat(sum)},
  };
  std::vector<TensorRef> refs = {
      {"adam.m", {static_cast<int64_t>(adam_.m().size())}, adam_.m().data()},
      {"adam.v", {static_cast<int64_t>(adam_.v().size())}, adam_.v().data()},
  };
  if (!pool_.empty())
    refs.push_back({"state_pool", {static_cast<int64_t>(pool_.size())}, pool_.data()});
  return WriteSafetensorsFile(dir + "/trainer_state.safetensors", refs, meta);
}

absl::Status Trainer::LoadParams(const std::string& dir) {
  const std::string where = absl::StrCat("load parameters '", dir, "': ");
  auto model_file = ReadSafetensorsFile(dir + "/model.safetensors");
  if (!model_file.ok())
    return absl::Status(model_file.status().code(),
                        where + std::string(model_file.status().message()));
  std::vector<std::pair<std::string, Tensor>> named(model_file->tensors.begin(),
                                                    model_file->tensors.end());
  auto flat = model_->table().FromTensors(named);
  if (!flat.ok()) return absl::InvalidArgumentError(where + std::string(flat.status().message()));
  params_ = std::move(*flat);
  return absl::OkStatus();
}

absl::Status Trainer::LoadCheckpoint(const std::string& dir) {
  const std::string where = absl::StrCat("load checkpoint '", dir, "': ");
  auto st = ReadSafetensorsFile(dir + "/trainer_state.safetensors");
  if (!st.ok()) return absl::Status(st.status().code(), where + std::string(st.status().message()));
  auto meta = [&](const std::string& key) -> std::string {
    auto it = st->metadata.find(key);
    return it == st->metadata.end() ? std::string() : it->second;
  };
  if (meta("format") != kStateFormat)
    return absl::InvalidArgumentError(absl::StrCat(where, "trainer_state.safetensors has format '",
                                                   meta("format"), "', expected '", kStateFormat,
                                                   "'"));
  const std::string want = options_.Fingerprint(*model_);
  if (meta("fingerprint") != want)
    return absl::FailedPreconditionError(absl::StrCat(
        where, "it was written by a different model or options:\n  saved:   ", meta("fingerprint"),
        "\n  current: ", want));
  auto model_file = ReadSafetensorsFile(dir + "/model.safetensors");
  if (!model_file.ok())
    return absl::Status(model_file.status().code(),
                        where + std::string(model_file.status().message()));
  std::vector<std::pair<std::string, Tensor>> named(model_file->tensors.begin(),
                                                    model_file->tensors.end());
  auto flat = model_->table().FromTensors(named);
  if (!flat.ok()) return absl::InvalidArgumentError(where + std::string(flat.status().message()));
  auto get = [&](const std::string& name, int64_t size, std::vector<float>* out) -> absl::Status {
    auto it = st->tensors.find(name);
    if (it == st->tensors.end() || static_cast<int64_t>(it->second.data.size()) != size)
      return absl::InvalidArgumentError(
          absl::StrCat(where, "tensor '", name, "' is missing or has the wrong size"));
    *out = it->second.data;
    return absl::OkStatus();
  };
  std::vector<float> m, v, pool;
  RETURN_IF_ERROR(get("adam.m", model_->table().total(), &m));
  RETURN_IF_ERROR(get("adam.v", model_->table().total(), &v));
  if (st->tensors.count("state_pool"))
    RETURN_IF_ERROR(get("state_pool", st->tensors.at("state_pool").data.size(), &pool));
  uint64_t sum = 0xcbf29ce484222325ULL;
  sum = Fnv1a(sum, flat->data(), flat->size() * sizeof(float));
  sum = Fnv1a(sum, m.data(), m.size() * sizeof(float));
  sum = Fnv1a(sum, v.data(), v.size() * sizeof(float));
  sum = Fnv1a(sum, pool.data(), pool.size() * sizeof(float));
  if (meta("checksum") != absl::StrCat(sum))
    return absl::DataLossError(absl::StrCat(where, "checksum mismatch (saved ", meta("checksum"),
                                            ", computed ", sum, "): the checkpoint is corrupt"));
  int64_t step = 0, adam_step = 0;
  uint64_t pos = 0;
  std::vector<std::string> words = absl::StrSplit(meta("rng"), ',');
  std::array<uint64_t, 4> rs{};
  bool ok = absl::SimpleAtoi(meta("step"), &step) &&
            absl::SimpleAtoi(meta("adam_step"), &adam_step) &&
            absl::SimpleAtoi(meta("data_position"), &pos) && words.size() == 4;
  for (int i = 0; ok && i < 4; ++i) ok = absl::SimpleAtoi(words[i], &rs[i]);
  if (!ok)
    return absl::InvalidArgumentError(where + "malformed step / data_position / rng metadata");
  params_ = std::move(*flat);
  adam_.m() = std::move(m);
  adam_.v() = std::move(v);
  adam_.set_step(adam_step);
  pool_ = std::move(pool);
  step_ = step;
  rng_.set_state(rs);
  data_->Seek(pos);
  return absl::OkStatus();
}

}  // namespace tapeloop::engine::train
