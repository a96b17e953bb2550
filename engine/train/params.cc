#include "engine/train/params.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/check.h"

namespace tapeloop::engine::train {

InitFn InitZeros() { return InitConstant(0.f); }

InitFn InitConstant(float value) {
  return [value](Rng&, std::span<float> v) {
    for (float& x : v) x = value;
  };
}

InitFn InitNormal(float stddev) {
  return [stddev](Rng& rng, std::span<float> v) { rng.FillNormal(v, stddev); };
}

InitFn InitUniform(float bound) {
  return [bound](Rng& rng, std::span<float> v) { rng.FillUniform(v, bound); };
}

ParamTable::ParamTable(std::vector<ParamSpec> specs) : specs_(std::move(specs)) {
  offsets_.push_back(0);
  for (const ParamSpec& s : specs_) offsets_.push_back(offsets_.back() + NumElements(s.shape));
  for (int i = 0; i < size(); ++i)
    for (int j = i + 1; j < size(); ++j) TL_CHECK(specs_[i].name != specs_[j].name);
}

int ParamTable::Find(const std::string& name) const {
  for (int i = 0; i < size(); ++i)
    if (specs_[i].name == name) return i;
  return -1;
}

std::vector<float> ParamTable::Initialize(Rng& rng) const {
  std::vector<float> flat(total(), 0.f);
  for (int i = 0; i < size(); ++i) {
    if (specs_[i].init) specs_[i].init(rng, std::span<float>(flat.data() + offset(i), numel(i)));
  }
  return flat;
}

std::vector<TensorRef> ParamTable::Views(std::span<const float> flat) const {
  TL_CHECK(static_cast<int64_t>(flat.size()) == total());
  std::vector<TensorRef> out;
  for (int i = 0; i < size(); ++i)
    out.push_back(TensorRef{specs_[i].name, specs_[i].shape, flat.data() + offset(i)});
  return out;
}

absl::StatusOr<std::vector<float>> ParamTable::FromTensors(
    const std::vector<std::pair<std::string, Tensor>>& tensors) const {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name[name] = &t;
  std::vector<float> flat(total());
  for (int i = 0; i < size(); ++i) {
    auto it = by_name.find(specs_[i].name);
    if (it == by_name.end())
      return absl::InvalidArgumentError(
          absl::StrCat("load parameters: tensor '", specs_[i].name, "' is missing"));
    if (it->second->shape != specs_[i].shape)
      return absl::InvalidArgumentError(absl::StrCat(
          "load parameters: tensor '", specs_[i].name, "' has shape ",
          ShapeString(it->second->shape), ", expected ", ShapeString(specs_[i].shape)));
    std::copy(it->second->data.begin(), it->second->data.end(), flat.begin() + offset(i));
    by_name.erase(it);
  }
  if (!by_name.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("load parameters: unexpected tensor '", by_name.begin()->first, "'"));
  return flat;
}

}  // namespace tapeloop::engine::train
