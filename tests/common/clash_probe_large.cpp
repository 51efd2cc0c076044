// The other half of the clash in clash_probe_small.cpp: the same variable at 32 bytes.
extern "C" {
__attribute__((visibility("default"))) long long effarch_clash_probe[4] = {1, 2, 3, 4};
}
