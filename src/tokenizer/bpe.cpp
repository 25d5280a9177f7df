// BPE model: merges applied lowest rank first (leftmost on ties) with a priority queue over a
// linked list of symbols, exactly as `tokenizers`' Word::merge_all.
#include "tokenizer/bpe.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <queue>
#include <thread>

#include "util/error.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

namespace {
constexpr size_t kMaxCachedWord = 256;
constexpr size_t kCacheCapacity = 10000;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

/// Open-addressing tables at most half full: a power of two >= 2n (>= 16).
uint64_t capacity_for(size_t n) {
  uint64_t c = 16;
  while (c < 2 * static_cast<uint64_t>(n)) c <<= 1;
  return c;
}
}  // namespace

namespace {
template <class Entries>
void build_index(Entries& entries, std::vector<std::string>& keys, std::vector<int32_t>& ids,
                 HugeVector<uint64_t>& slots, uint64_t& mask) {
  keys.clear();
  ids.clear();
  keys.reserve(entries.size());
  ids.reserve(entries.size());
  const uint64_t cap = capacity_for(entries.size());
  slots.assign(cap, 0);
  mask = cap - 1;
  for (auto& [key, id] : entries) {
    const uint64_t h = std::hash<std::string_view>{}(key);
    const uint64_t tag = h >> 32 << 32;
    for (uint64_t i = h & mask;; i = (i + 1) & mask) {
      const uint64_t s = slots[i];
      if (s == 0) {
        keys.emplace_back(std::move(key));
        ids.push_back(id);
        slots[i] = tag | keys.size();
        break;
      }
      const size_t k = static_cast<uint32_t>(s) - 1;
      if ((s >> 32 << 32) == tag && keys[k] == key) {
        ids[k] = id;  // a repeated key: the last one counts
        break;
      }
    }
  }
}
}  // namespace

void* huge_page_alloc(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes < kHuge) return ::operator new(bytes);
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (!p) throw std::bad_alloc();
  ::madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure is harmless
  return p;
}

void huge_page_free(void* p, size_t bytes) {
  if (bytes < (size_t{2} << 20))
    ::operator delete(p);
  else
    std::free(p);
}

void TokenIndex::build(std::vector<std::pair<std::string, int32_t>>&& entries) {
  build_index(entries, keys_, ids_, slots_, mask_);
}

void TokenIndex::build_from_views(std::span<const std::pair<std::string_view, int32_t>> entries) {
  build_index(entries, keys_, ids_, slots_, mask_);
}

int32_t TokenIndex::find(std::string_view token) const {
  if (slots_.empty()) return -1;
  const uint64_t h = std::hash<std::string_view>{}(token);
  const uint64_t tag = h >> 32 << 32;
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const uint64_t s = slots_[i];
    if (s == 0) return -1;
    const size_t k = static_cast<uint32_t>(s) - 1;
    if ((s >> 32 << 32) == tag && keys_[k] == token) return ids_[k];
  }
}

void MergeIndex::reserve(size_t n) {
  const uint64_t cap = capacity_for(n);
  slots_.assign(cap, Entry{kEmpty, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  size_ = 0;
}

void MergeIndex::insert(uint64_t key, int32_t rank, int32_t merged) {
  if (2 * (size_ + 1) > slots_.size()) {  // grow: re-insert in slot order keeps first ranks
    HugeVector<Entry> old = std::move(slots_);
    reserve(2 * (size_ + 1));
    for (const Entry& e : old)
      if (e.key != kEmpty) insert(e.key, e.rank, e.merged);
  }
  for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) return;
    if (e.key == kEmpty) {
      e = {key, rank, merged};
      ++size_;
      return;
    }
  }
}

void Bpe::load_options(const json& m) {
  std::string type = m.value("type", std::string("BPE"));
  if (type != "BPE")
    raise<Unsupported>("[tokenizer] model type '{}' is not supported (BPE only)", type);
  auto str_or_empty = [&](const char* key) {
    return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() : std::string();
  };
  prefix_ = str_or_empty("continuing_subword_prefix");
  suffix_ = str_or_empty("end_of_word_suffix");
  byte_fallback_ = m.value("byte_fallback", false);
  fuse_unk_ = m.value("fuse_unk", false);
  ignore_merges_ = m.value("ignore_merges", false);
}

Bpe::Bpe(const json& m) {
  load_options(m);
  const json& vocab = m.at("vocab");
  if (!vocab.is_object()) raise<FormatError>("[tokenizer] model.vocab must be an object");
  BpeTables t;
  t.vocab.reserve(vocab.size());
  for (auto& [tok, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 30))
      raise<FormatError>("[tokenizer] model.vocab['{}'] is not a valid id", tok);
    t.vocab.emplace_back(tok, id.get<int32_t>());
  }
  const json& merges = m.contains("merges") ? m["merges"] : json::array();
  t.merges.reserve(merges.size());
  int64_t rank = 0;
  for (auto& mg : merges) {
    if (mg.is_string()) {
      const std::string& s = mg.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        raise<FormatError>("[tokenizer] merge #{} '{}' is not 'a b'", rank, s);
      t.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      t.merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
    } else {
      raise<FormatError>("[tokenizer] merge #{} has a bad format: {}", rank, mg.dump());
    }
    ++rank;
  }
  build(std::move(t));
  set_unk(m);
}

Bpe::Bpe(const json& m, BpeTables tables) {
  load_options(m);
  for (const auto& [tok, id] : tables.vocab)
    if (id < 0 || id > (1 << 30))
      raise<FormatError>("[tokenizer] model.vocab['{}'] is not a valid id", tok);
  build(std::move(tables));
  set_unk(m);
}

void Bpe::set_unk(const json& m) {
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    const int32_t id = vocab_.find(m["unk_token"].get<std::string>());
    if (id >= 0) unk_id_ = id;
  }
}

namespace {
/// A merge's ids: left, right, merged (-1: missing from the vocab), or a missing prefix.
struct MergeIds {
  int32_t a = -1, b = -1, merged = -1;
  bool bad_prefix = false;
};
}  // namespace

void Bpe::index_ids() {
  int32_t max_id = -1;
  for (int32_t id : vocab_.ids()) max_id = std::max(max_id, id);
  id_key_.assign(static_cast<size_t>(max_id + 1), -1);
  // Two keys with one id: the key first seen later in the file names it.
  for (size_t i = 0; i < vocab_.size(); ++i) id_key_[vocab_.ids()[i]] = static_cast<int32_t>(i);
  for (int b = 0; b < 256; ++b) byte_ids_[b] = vocab_.find(fmt::format("<0x{:02X}>", b));
}

void Bpe::build(BpeTables t) {
  vocab_.build(std::move(t.vocab));  // a repeated key: the last one counts
  index_ids();
  // The merges' vocab lookups (three hash lookups each, ~500k merges for a 262k vocab) run on
  // several threads: they only read vocab_. Errors are then raised for the lowest rank, and the
  // pairs inserted in rank order (a repeated pair keeps its lowest rank), as a serial loop does.
  const size_t n = t.merges.size();
  std::vector<MergeIds> ids(n);
  const auto resolve = [&](size_t begin, size_t end) {
    std::string merged;
    for (size_t r = begin; r < end; ++r) {
      const auto& [a, b] = t.merges[r];
      MergeIds& m = ids[r];
      const int32_t ia = vocab_.find(a), ib = vocab_.find(b);
      if (ia < 0 || ib < 0) continue;
      m.a = ia;
      m.b = ib;
      if (!prefix_.empty() && b.compare(0, prefix_.size(), prefix_) != 0) {
        m.bad_prefix = true;
        continue;
      }
      merged.assign(a);
      merged.append(b, prefix_.size());
      m.merged = vocab_.find(merged);
    }
  };
  const size_t threads =
      n < 65536 ? 1 : std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  if (threads <= 1) {
    resolve(0, n);
  } else {
    std::vector<std::thread> pool;
    for (size_t w = 1; w < threads; ++w)
      pool.emplace_back(resolve, n * w / threads, n * (w + 1) / threads);
    resolve(0, n / threads);
    for (auto& th : pool) th.join();
  }
  merges_.reserve(n);
  for (size_t r = 0; r < n; ++r) {
    const MergeIds& m = ids[r];
    const auto& [a, b] = t.merges[r];
    if (m.a < 0 || m.b < 0)
      raise<FormatError>("[tokenizer] merge #{} '{} {}' uses a token missing from the vocab", r, a,
                         b);
    if (m.bad_prefix)
      raise<FormatError>("[tokenizer] merge #{}: '{}' lacks the subword prefix", r, b);
    if (m.merged < 0)
      raise<FormatError>("[tokenizer] merge #{} result '{}' is missing from the vocab", r,
                         a + b.substr(prefix_.size()));
    merges_.insert(pair_key(m.a, m.b), static_cast<int32_t>(r), m.merged);
  }
}

Bpe::Bpe(const json& m, const BpeSnapshot& s) {
  load_options(m);
  const size_t n = s.vocab.size();
  for (const auto& [tok, id] : s.vocab)
    if (id < 0 || id > (1 << 30))
      raise<FormatError>("[tokenizer] snapshot: vocab id {} is out of range", id);
  // The merges are ids already: their table builds while the vocab's does (each is about half
  // of a load from the cache); they are checked against the vocab afterwards.
  std::exception_ptr merges_error;
  const auto insert_merges = [&]() noexcept {
    try {
      merges_.reserve(s.merges.size());
      for (const BpeSnapshot::Merge& mg : s.merges)
        merges_.insert(pair_key(mg.left, mg.right), mg.rank, mg.merged);
    } catch (...) {
      merges_error = std::current_exception();
    }
  };
  {
    std::jthread merges_thread;  // joined on the way out, also when the vocab's build throws
    if (s.merges.size() >= 65536 && std::thread::hardware_concurrency() > 1)
      merges_thread = std::jthread(insert_merges);
    else
      insert_merges();
    vocab_.build_from_views(s.vocab);
    index_ids();
  }
  if (merges_error) std::rethrow_exception(merges_error);
  if (vocab_.size() != n) raise<FormatError>("[tokenizer] snapshot: a vocab key is repeated");
  const auto known = [&](int32_t id) {
    return id >= 0 && static_cast<size_t>(id) < id_key_.size() && id_key_[id] >= 0;
  };
  int32_t last_rank = -1;
  for (const BpeSnapshot::Merge& mg : s.merges) {
    if (mg.rank <= last_rank || !known(mg.left) || !known(mg.right) || !known(mg.merged))
      raise<FormatError>("[tokenizer] snapshot: merge of rank {} is invalid", mg.rank);
    last_rank = mg.rank;
  }
  set_unk(m);
}

std::vector<BpeSnapshot::Merge> Bpe::merges_by_rank() const {
  // Ranks are below the number of merges read, so the entries sort by placing them at their
  // ranks (no comparison sort of ~500k entries).
  int32_t max_rank = -1;
  size_t count = 0;
  for (const MergeIndex::Entry& e : merges_.slots())
    if (e.key != MergeIndex::kEmpty) max_rank = std::max(max_rank, e.rank), ++count;
  std::vector<const MergeIndex::Entry*> by_rank(static_cast<size_t>(max_rank + 1), nullptr);
  for (const MergeIndex::Entry& e : merges_.slots())
    if (e.key != MergeIndex::kEmpty) by_rank[static_cast<size_t>(e.rank)] = &e;
  std::vector<BpeSnapshot::Merge> out;
  out.reserve(count);
  for (const MergeIndex::Entry* e : by_rank)
    if (e)
      out.push_back({static_cast<int32_t>(e->key >> 32), static_cast<int32_t>(e->key & 0xFFFFFFFFu),
                     e->rank, e->merged});
  return out;
}

void Bpe::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const int32_t id = vocab_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  bool cacheable = word.size() < kMaxCachedWord;
  if (cacheable) {
    std::lock_guard<std::mutex> lk(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lk(cache_mu_);
    if (cache_.size() < kCacheCapacity)
      cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + start, out.end()));
  }
}

void Bpe::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> syms;
  syms.reserve(w.size());
  auto add = [&](int32_t id) {
    int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, -1, true});
    if (n > 0) syms[n - 1].next = n;
  };
  int32_t pending_unk = -1;
  std::string buf;
  size_t i = 0;
  while (i < w.size()) {
    size_t b = i;
    i += utf8::seq_len(static_cast<unsigned char>(w[i]));
    if (i > w.size()) i = w.size();
    std::string_view ch = w.substr(b, i - b);
    std::string_view key = ch;
    if ((!prefix_.empty() && b != 0) || (!suffix_.empty() && i == w.size())) {
      buf.assign(b != 0 ? prefix_ : std::string());
      buf += ch;
      if (i == w.size()) buf += suffix_;
      key = buf;
    }
    if (const int32_t id = vocab_.find(key); id >= 0) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : key) all = all && byte_ids_[c] >= 0;
      if (all) {
        if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
        for (unsigned char c : key) add(byte_ids_[c]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Cand {
    int32_t rank, pos, new_id;
    bool operator<(const Cand& o) const {  // max-heap: lowest rank, then leftmost, on top
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  // Reserved up front; built empty (gcc 13 warns about make_heap over a moved-in empty vector).
  struct CandQueue : std::priority_queue<Cand> {
    void reserve(size_t n) { c.reserve(n); }
  } q;
  q.reserve(syms.size());
  auto push_pair = [&](int32_t pos) {
    int32_t nx = syms[pos].next;
    if (nx < 0) return;
    if (const MergeIndex::Entry* e = merges_.find(pair_key(syms[pos].id, syms[nx].id)))
      q.push({e->rank, pos, e->merged});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(syms.size()); ++p) push_pair(p);
  while (!q.empty()) {
    Cand c = q.top();
    q.pop();
    Symbol& s = syms[c.pos];
    if (!s.alive || s.next < 0) continue;
    Symbol& r = syms[s.next];
    const MergeIndex::Entry* e = merges_.find(pair_key(s.id, r.id));
    if (e == nullptr || e->merged != c.new_id) continue;  // stale entry
    s.id = c.new_id;
    r.alive = false;
    s.next = r.next;
    if (s.next >= 0) syms[s.next].prev = c.pos;
    if (s.prev >= 0) push_pair(s.prev);
    push_pair(c.pos);
  }
  for (auto& s : syms)
    if (s.alive) out.push_back(s.id);
}

}  // namespace ingot::tokenizer
