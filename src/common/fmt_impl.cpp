// fmt's compiled part, built once for the whole project.
//
// effarch formats with the fmt headers that ship inside libtorch's wheel (fmt 12; torch's include
// folder comes first, so Debian's older fmt never mixes in). Built header-only, every file that
// includes <fmt/format.h> compiled fmt's formatting core again: 2-4 s of each file's build time,
// measured on the CI machine, in a project of a few hundred files and two builds per CI run
// (docs/building.md). Here that core is compiled once, as fmt's own library build does, and the
// other files link against it.
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {

// The templates fmt's headers declare without a body (or as extern) for the library to provide.
template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<wchar_t>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
template FMT_API auto decimal_point_impl(locale_ref) -> wchar_t;

}  // namespace detail

#if FMT_USE_LOCALE
template FMT_API auto locale_ref::get<std::locale>() const -> std::locale;
#endif

FMT_END_NAMESPACE
