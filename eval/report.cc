#include "eval/report.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace tapeloop::eval {
namespace {

namespace fs = std::filesystem;

std::string Pct(double x) { return absl::StrFormat("%.0f%%", 100.0 * x); }

std::string Series(const Aggregate& a) { return absl::StrCat(a.model, " / ", a.mode); }

absl::Status WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("report: cannot write ", path.string()));
  return absl::OkStatus();
}

std::string HtmlEscape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

// Groups cells: task -> series ("model / mode") -> cells sorted by length.
std::map<std::string, std::map<std::string, std::vector<Aggregate>>> ByTask(
    const std::vector<Aggregate>& cells) {
  std::map<std::string, std::map<std::string, std::vector<Aggregate>>> out;
  for (const Aggregate& a : cells) out[a.task][Series(a)].push_back(a);
  for (auto& [task, series] : out) {
    for (auto& [name, v] : series) {
      std::sort(v.begin(), v.end(),
                [](const Aggregate& x, const Aggregate& y) { return x.length < y.length; });
    }
  }
  return out;
}

// What a task's length counts.
std::string LengthUnit(const std::string& task) {
  return task == "code_debug" ? "n, functions = files" : "digits";
}

std::string Quote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "''"}}), "'");
}

// Line styles for the series, in order: colours that stay apart on white (no yellow) and a
// different marker each, so lines that lie on top of each other can still be told apart.
constexpr char kLineTypes[] =
    "set linetype 1 lc rgb '#0072b2' pt 7 ps 1.0\n"
    "set linetype 2 lc rgb '#d55e00' pt 5 ps 1.0\n"
    "set linetype 3 lc rgb '#009e73' pt 9 ps 1.3\n"
    "set linetype 4 lc rgb '#cc79a7' pt 13 ps 1.3\n"
    "set linetype 5 lc rgb '#000000' pt 11 ps 1.3\n"
    "set linetype 6 lc rgb '#e69f00' pt 3 ps 1.3\n"
    "set linetype 7 lc rgb '#56b4e9' pt 1 ps 1.3\n"
    "set linetype 8 lc rgb '#7f7f7f' pt 2 ps 1.3\n"
    "set linetype cycle 8\n";

// A gnuplot script that draws the same figure as SVG and PNG.
std::string AccuracyScript(const std::string& task,
                           const std::map<std::string, std::vector<Aggregate>>& series,
                           int64_t train_max, const fs::path& dir) {
  std::string s;
  int k = 0;
  for (const auto& [name, cells] : series) {
    absl::StrAppend(&s, "$d", k++, " << EOD\n");
    for (const Aggregate& a : cells) {
      absl::StrAppendFormat(&s, "%d %.4f %.4f %.4f\n", a.length, 100 * a.accuracy, 100 * a.seed_min,
                            100 * a.seed_max);
    }
    absl::StrAppend(&s, "EOD\n");
  }
  std::string body = absl::StrCat(
      kLineTypes, "set logscale x\nset xlabel 'problem length (", LengthUnit(task),
      ", log scale)'\n"
      "set ylabel 'exact match (%)'\nset yrange [-3:103]\nset grid ytics lc rgb '#dddddd'\n"
      "set key outside right top box\nset title ",
      Quote(absl::StrCat(task, ": accuracy vs length")), "\n");
  if (train_max > 0) {
    absl::StrAppendFormat(&body,
                          "set object 1 rect from 0.8, graph 0 to %d, graph 1 fillcolor rgb "
                          "'#dbe7f3' fillstyle solid 0.7 noborder behind\n"
                          "set label 1 'training range' at 1, graph 0.04 tc rgb '#4a6a8a'\n",
                          train_max);
  }
  std::vector<std::string> plots;
  k = 0;
  for (const auto& [name, cells] : series) {
    plots.push_back(
        absl::StrCat("$d", k, " using 1:2:3:4 with yerrorlines lw 2 title ", Quote(name)));
    ++k;
  }
  absl::StrAppend(&body, "plot ", absl::StrJoin(plots, ", \\\n  "), "\n");
  std::string stem = (dir / absl::StrCat("accuracy_", task)).string();
  absl::StrAppend(&s, "set terminal svg size 960,560 dynamic font 'DejaVu Sans,13'\n",
                  "set output ", Quote(stem + ".svg"), "\n", body,
                  "set terminal pngcairo size 1280,750 font 'DejaVu Sans,14'\n", "set output ",
                  Quote(stem + ".png"), "\n", "replot\nset output\n");
  return s;
}

std::string CostScript(const std::string& task,
                       const std::map<std::string, std::vector<Aggregate>>& series,
                       const fs::path& dir) {
  std::string s;
  int k = 0;
  for (const auto& [name, cells] : series) {
    absl::StrAppend(&s, "$c", k++, " << EOD\n");
    for (const Aggregate& a : cells) {
      absl::StrAppendFormat(&s, "%d %.4f %.2f %.0f\n", a.length, std::max(a.mean_wall_ms, 1e-3),
                            std::max(a.mean_generated_tokens, 1.0),
                            std::max(a.mean_peak_state_bytes, 1.0));
    }
    absl::StrAppend(&s, "EOD\n");
  }
  std::vector<std::string> time_plots, token_plots, bytes_plots;
  k = 0;
  for (const auto& [name, cells] : series) {
    time_plots.push_back(
        absl::StrCat("$c", k, " using 1:2 with linespoints lw 2 title ", Quote(name)));
    token_plots.push_back(
        absl::StrCat("$c", k, " using 1:3 with linespoints lw 2 title ", Quote(name)));
    bytes_plots.push_back(
        absl::StrCat("$c", k, " using 1:4 with linespoints lw 2 title ", Quote(name)));
    ++k;
  }
  std::string body = absl::StrCat(
      kLineTypes, "set multiplot layout 1,3 title ",
      Quote(absl::StrCat(task, ": cost per episode")), "\n",
      "set logscale xy\nset grid lc rgb '#dddddd'\nset key top left font ',10'\n"
      "set xlabel 'length (",
      LengthUnit(task), ")'\nset ylabel 'wall time (ms)'\nplot ", absl::StrJoin(time_plots, ", "),
      "\nset ylabel 'generated tokens'\nplot ", absl::StrJoin(token_plots, ", "),
      "\nset ylabel 'peak session state (bytes)'\nset key bottom right\nplot ",
      absl::StrJoin(bytes_plots, ", "), "\nunset multiplot\n");
  std::string stem = (dir / absl::StrCat("cost_", task)).string();
  absl::StrAppend(&s, "set terminal svg size 1500,480 dynamic font 'DejaVu Sans,12'\n",
                  "set output ", Quote(stem + ".svg"), "\n", body,
                  "set terminal pngcairo size 1800,560 font 'DejaVu Sans,13'\n", "set output ",
                  Quote(stem + ".png"), "\n", body, "set output\n");
  return s;
}

bool RunGnuplot(const fs::path& script) {
  std::string cmd =
      absl::StrCat("gnuplot ", Quote(script.string()), " 2>", Quote(script.string() + ".log"));
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

std::string LengthGeneralization(int64_t train_length, const std::vector<Aggregate>& cells) {
  const Aggregate* best = nullptr;
  for (const Aggregate& a : cells) {
    if (a.accuracy >= 0.05 && (best == nullptr || a.length > best->length)) best = &a;
  }
  std::string n = train_length > 0 ? absl::StrCat(train_length) : "?";
  if (best == nullptr) return absl::StrCat(n, "->- (0%)");
  return absl::StrCat(n, "->", best->length, " (", Pct(best->accuracy), ")");
}

std::string MarkdownReport(const ReportInput& input, const std::vector<Aggregate>& cells) {
  std::string md = absl::StrCat("# Evaluation report\n\nrun `", input.run_id, "`, ",
                                input.episodes.size(), " episodes\n");
  for (const auto& [task, series] : ByTask(cells)) {
    std::set<int64_t> lengths;
    for (const auto& [name, v] : series) {
      for (const Aggregate& a : v) lengths.insert(a.length);
    }
    absl::StrAppend(&md, "\n## ", task, "\n\n| model / mode | n->m (p%) |");
    for (int64_t L : lengths) absl::StrAppend(&md, " @", L, " |");
    absl::StrAppend(&md, "\n|---|---|");
    for (size_t i = 0; i < lengths.size(); ++i) absl::StrAppend(&md, "---|");
    absl::StrAppend(&md, "\n");
    const int64_t stop_after_zero = input.config.value("stop_after_zero", int64_t{0});
    bool any_stopped = false;
    for (const auto& [name, v] : series) {
      auto it = input.train_length.find(v.front().model);
      int64_t n = it == input.train_length.end() ? 0 : it->second;
      absl::StrAppend(&md, "| ", name, " | ", LengthGeneralization(n, v), " |");
      // Early stop (EvalOptions::stop_after_zero): the series' longest lengths scored 0%, so
      // the lengths past them were not run.
      int64_t stopped_after = -1, cap = 0;
      for (const auto& m : input.config.value("models", nlohmann::json::array())) {
        if (m.value("name", "") == v.front().model) cap = m.value("max_length", int64_t{0});
      }
      if (stop_after_zero > 0 && static_cast<int64_t>(v.size()) >= stop_after_zero) {
        std::vector<const Aggregate*> by_length;
        for (const Aggregate& a : v) by_length.push_back(&a);
        std::sort(by_length.begin(), by_length.end(),
                  [](const Aggregate* a, const Aggregate* b) { return a->length < b->length; });
        bool zero = true;
        for (int64_t k = 0; k < stop_after_zero; ++k) {
          zero = zero && by_length[by_length.size() - 1 - k]->accuracy == 0.0;
        }
        if (zero) stopped_after = by_length.back()->length;
      }
      for (int64_t L : lengths) {
        auto c =
            std::find_if(v.begin(), v.end(), [&](const Aggregate& a) { return a.length == L; });
        if (c == v.end() && stopped_after >= 0 && L > stopped_after && (cap <= 0 || L <= cap)) {
          absl::StrAppend(&md, " stopped |");
          any_stopped = true;
        } else if (c == v.end()) {
          absl::StrAppend(&md, " |");
        } else if (c->by_seed.size() > 1) {
          absl::StrAppend(&md, " ", Pct(c->accuracy), " [", Pct(c->seed_min), "-", Pct(c->seed_max),
                          "] |");
        } else {
          absl::StrAppend(&md, " ", Pct(c->accuracy), " |");
        }
      }
      absl::StrAppend(&md, "\n");
    }
    if (any_stopped) {
      absl::StrAppend(&md, "\n\"stopped\": not run, after ", stop_after_zero,
                      " consecutive lengths at 0% (--stop-after-zero ", stop_after_zero, ").\n");
    }
    absl::StrAppend(
        &md,
        "\nCost per episode (mean wall ms / generated tokens / peak state bytes):\n\n"
        "| model / mode | length | episodes | wall ms | tokens | state bytes | digit acc |\n"
        "|---|---|---|---|---|---|---|\n");
    for (const auto& [name, v] : series) {
      for (const Aggregate& a : v) {
        absl::StrAppendFormat(&md, "| %s | %d | %d | %.1f | %.0f | %.0f | %s |\n", name, a.length,
                              a.episodes, a.mean_wall_ms, a.mean_generated_tokens,
                              a.mean_peak_state_bytes, Pct(a.digit_accuracy));
      }
    }
  }
  return md;
}

absl::Status WriteReport(const ReportInput& input, const std::string& dir_name) {
  fs::path dir(dir_name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("report: cannot create ", dir_name, ": ", ec.message()));
  std::vector<Aggregate> cells = AggregateRows(input.episodes);

  // aggregate.json and episodes.jsonl
  nlohmann::json agg = {
      {"run_id", input.run_id}, {"config", input.config}, {"cells", nlohmann::json::array()}};
  for (const Aggregate& a : cells) {
    nlohmann::json seeds = nlohmann::json::object();
    for (auto& [seed, acc] : a.by_seed) seeds[std::to_string(seed)] = acc;
    agg["cells"].push_back({{"task", a.task},
                            {"model", a.model},
                            {"mode", a.mode},
                            {"length", a.length},
                            {"episodes", a.episodes},
                            {"accuracy", a.accuracy},
                            {"accuracy_by_seed", seeds},
                            {"digit_accuracy", a.digit_accuracy},
                            {"trajectory_match", a.trajectory_match},
                            {"mean_wall_ms", a.mean_wall_ms},
                            {"mean_generated_tokens", a.mean_generated_tokens},
                            {"mean_peak_state_bytes", a.mean_peak_state_bytes}});
  }
  RETURN_IF_ERROR(WriteFile(dir / "aggregate.json", DumpJson(agg, 2) + "\n"));
  std::string jsonl;
  for (const EpisodeRow& r : input.episodes) {
    nlohmann::json line = {{"model", r.key.model},
                           {"task", r.key.task},
                           {"mode", r.key.mode},
                           {"length", r.key.length},
                           {"seed", r.key.seed},
                           {"index", r.key.index},
                           {"correct", r.correct},
                           {"trajectory_match", r.trajectory_match},
                           {"digit_accuracy", r.digit_accuracy},
                           {"generated_tokens", r.generated_tokens},
                           {"tool_calls", r.tool_calls},
                           {"wall_ms", r.wall_ms},
                           {"peak_state_bytes", r.peak_state_bytes},
                           {"record", r.record}};
    absl::StrAppend(&jsonl, DumpJson(line), "\n");
  }
  RETURN_IF_ERROR(WriteFile(dir / "episodes.jsonl", jsonl));

  // Plots.
  std::string md = MarkdownReport(input, cells);
  std::vector<std::string> figures;
  bool plotted = true;
  for (const auto& [task, series] : ByTask(cells)) {
    int64_t train_max = 0;
    for (const auto& [name, v] : series) {
      auto it = input.train_length.find(v.front().model);
      if (it != input.train_length.end()) train_max = std::max(train_max, it->second);
    }
    fs::path acc_script = dir / absl::StrCat("accuracy_", task, ".gp");
    fs::path cost_script = dir / absl::StrCat("cost_", task, ".gp");
    RETURN_IF_ERROR(WriteFile(acc_script, AccuracyScript(task, series, train_max, dir)));
    RETURN_IF_ERROR(WriteFile(cost_script, CostScript(task, series, dir)));
    plotted = RunGnuplot(acc_script) && RunGnuplot(cost_script) && plotted;
    figures.push_back(task);
  }
  if (!plotted) {
    absl::StrAppend(
        &md, "\n(plots could not be drawn: gnuplot failed or is missing; see the .gp.log files)\n");
  } else {
    absl::StrAppend(&md, "\n## Figures\n\n");
    for (const std::string& task : figures) {
      absl::StrAppend(&md, "![accuracy vs length, ", task, "](accuracy_", task, ".svg)\n\n![cost, ",
                      task, "](cost_", task, ".svg)\n\n");
    }
  }
  RETURN_IF_ERROR(WriteFile(dir / "report.md", md));

  // HTML: the same tables, rendered plainly, with the figures inline.
  std::string html = absl::StrCat(
      "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>tapeloop evaluation ",
      HtmlEscape(input.run_id),
      "</title><style>body{font-family:sans-serif;max-width:1400px;margin:2em auto}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;"
      "text-align:right}td:first-child{text-align:left}img{max-width:100%}</style></head><body>\n");
  // Convert the Markdown tables line by line.
  bool in_table = false;
  for (absl::string_view line : absl::StrSplit(md, '\n')) {
    std::string l(line);
    if (l.rfind("|", 0) == 0) {
      if (l.rfind("|---", 0) == 0) continue;
      if (!in_table) absl::StrAppend(&html, "<table>\n");
      in_table = true;
      std::vector<std::string> cols = absl::StrSplit(l.substr(1, l.size() - 2), '|');
      absl::StrAppend(&html, "<tr>");
      for (auto& c : cols)
        absl::StrAppend(&html, "<td>", HtmlEscape(std::string(absl::StripAsciiWhitespace(c))),
                        "</td>");
      absl::StrAppend(&html, "</tr>\n");
      continue;
    }
    if (in_table) absl::StrAppend(&html, "</table>\n");
    in_table = false;
    if (l.rfind("# ", 0) == 0) {
      absl::StrAppend(&html, "<h1>", HtmlEscape(l.substr(2)), "</h1>\n");
    } else if (l.rfind("## ", 0) == 0) {
      absl::StrAppend(&html, "<h2>", HtmlEscape(l.substr(3)), "</h2>\n");
    } else if (l.rfind("![", 0) == 0) {
      size_t open = l.find("](");
      absl::StrAppend(&html, "<p><img src=\"", HtmlEscape(l.substr(open + 2, l.size() - open - 3)),
                      "\" alt=\"", HtmlEscape(l.substr(2, open - 2)), "\"></p>\n");
    } else if (!l.empty()) {
      absl::StrAppend(&html, "<p>", HtmlEscape(l), "</p>\n");
    }
  }
  if (in_table) absl::StrAppend(&html, "</table>\n");
  absl::StrAppend(&html, "</body></html>\n");
  return WriteFile(dir / "report.html", html);
}

}  // namespace tapeloop::eval
