// One half of a deliberate clash for tests/common/linked_symbols_test.cpp: this library defines
// the variable at 4 bytes, clash_probe_large.cpp at 32.
extern "C" {
__attribute__((visibility("default"))) int effarch_clash_probe = 1;
}
