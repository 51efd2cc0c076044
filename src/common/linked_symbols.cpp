#include "effarch/common/linked_symbols.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

namespace effarch {
namespace {

// What one loaded object's dynamic section says about its symbol table.
struct DynamicTables {
  const ElfW(Sym)* symbols = nullptr;
  const char* names = nullptr;
  const ElfW(Half)* versions = nullptr;  // DT_VERSYM: bit 15 marks a hidden (non-default) version
  const std::uint32_t* sysv_hash = nullptr;
  const std::uint32_t* gnu_hash = nullptr;
};

// glibc rewrites these d_ptr entries to run-time addresses when it loads an object, but not for
// every object (the vDSO keeps offsets): an address below the load base is still an offset.
template <typename T>
const T* at(const dl_phdr_info* info, ElfW(Addr) ptr) {
  return reinterpret_cast<const T*>(ptr < info->dlpi_addr ? info->dlpi_addr + ptr : ptr);
}

DynamicTables tables_of(const dl_phdr_info* info) {
  DynamicTables t;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
    const auto* dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    for (; dyn->d_tag != DT_NULL; ++dyn) {
      switch (dyn->d_tag) {
        case DT_SYMTAB: t.symbols = at<ElfW(Sym)>(info, dyn->d_un.d_ptr); break;
        case DT_STRTAB: t.names = at<char>(info, dyn->d_un.d_ptr); break;
        case DT_VERSYM: t.versions = at<ElfW(Half)>(info, dyn->d_un.d_ptr); break;
        case DT_HASH: t.sysv_hash = at<std::uint32_t>(info, dyn->d_un.d_ptr); break;
        case DT_GNU_HASH: t.gnu_hash = at<std::uint32_t>(info, dyn->d_un.d_ptr); break;
        default: break;
      }
    }
  }
  return t;
}

// The dynamic symbol table has no length of its own: DT_HASH's chain count is it; a GNU hash
// table ends with the last chain of its highest bucket (the entry with bit 0 set).
std::size_t symbol_count(const DynamicTables& t) {
  if (t.sysv_hash) return t.sysv_hash[1];
  if (!t.gnu_hash) return 0;
  const std::uint32_t buckets = t.gnu_hash[0], first = t.gnu_hash[1], bloom_words = t.gnu_hash[2];
  const auto* bucket = t.gnu_hash + 4 + bloom_words * (sizeof(ElfW(Addr)) / 4);
  const std::uint32_t* chain = bucket + buckets;
  std::uint32_t last = 0;
  for (std::uint32_t b = 0; b < buckets; ++b) last = std::max(last, bucket[b]);
  if (last < first) return first;
  while ((chain[last - first] & 1u) == 0) ++last;
  return last + 1;
}

// A global or weak variable this object defines and exports at its default version: one that can
// take part in interposition.
bool interposable_variable(const ElfW(Sym)& s, const ElfW(Half)* versions, std::size_t i) {
  const int bind = ELF64_ST_BIND(s.st_info);
  return ELF64_ST_TYPE(s.st_info) == STT_OBJECT && s.st_shndx != SHN_UNDEF &&
         (bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE) &&
         ELF64_ST_VISIBILITY(s.st_other) == STV_DEFAULT && !(versions && (versions[i] & 0x8000));
}

std::string file_name(const char* path) {
  const std::string p = path && *path ? path : "(the program)";
  return p.substr(p.find_last_of('/') + 1);
}

// One definition as loaded: its library's name (in the loader's own list), address and size.
struct Loaded {
  const char* library;
  const void* address;
  std::size_t size;
};
// By name; the names point into the loaded objects' own string tables.
using Definitions = std::unordered_map<std::string_view, std::vector<Loaded>>;

int collect(dl_phdr_info* info, std::size_t, void* data) {
  auto& defs = *static_cast<Definitions*>(data);
  const DynamicTables t = tables_of(info);
  if (!t.symbols || !t.names) return 0;
  const std::size_t n = symbol_count(t);
  for (std::size_t i = 1; i < n; ++i) {
    const ElfW(Sym)& s = t.symbols[i];
    if (interposable_variable(s, t.versions, i))
      defs[std::string_view(t.names + s.st_name)].push_back(
          {info->dlpi_name, reinterpret_cast<const void*>(info->dlpi_addr + s.st_value), static_cast<std::size_t>(s.st_size)});
  }
  return 0;
}

}  // namespace

std::vector<SymbolClash> undersized_symbol_clashes() {
  Definitions defs;
  dl_iterate_phdr(collect, &defs);
  std::vector<SymbolClash> clashes;
  for (auto& [name, d] : defs) {
    if (d.size() < 2) continue;
    if (std::all_of(d.begin(), d.end(), [&](const auto& x) { return x.size == d.front().size; })) continue;
    const auto largest = std::max_element(d.begin(), d.end(), [](const auto& a, const auto& b) { return a.size < b.size; });
    // The definition every reference was bound to: the first in the global lookup order.
    const void* address = dlsym(RTLD_DEFAULT, name.data());  // (a whole C string of a table)
    const auto winner = std::find_if(d.begin(), d.end(), [&](const auto& x) { return x.address == address; });
    if (winner == d.end() || winner->size >= largest->size) continue;
    SymbolClash clash{std::string(name), {{file_name(winner->library), winner->size}}};
    for (auto x = d.begin(); x != d.end(); ++x)
      if (x != winner) clash.definitions.push_back({file_name(x->library), x->size});
    clashes.push_back(std::move(clash));
  }
  std::sort(clashes.begin(), clashes.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return clashes;
}

std::string describe(const SymbolClash& clash) {
  std::string losers;
  for (std::size_t i = 1; i < clash.definitions.size(); ++i)
    losers += fmt::format("{}{} ({} bytes)", i > 1 ? ", " : "", clash.definitions[i].library, clash.definitions[i].size);
  return fmt::format("{}: {} ({} bytes) wins over {}", clash.name, clash.definitions.front().library,
                     clash.definitions.front().size, losers);
}

}  // namespace effarch
