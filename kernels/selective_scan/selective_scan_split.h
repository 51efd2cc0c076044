#pragma once
// The sequence split's workspace and pieces, shared by the kernels that cut a sequence into pieces
// scanned in parallel: the 32-channel kernel's split (selective_scan_math.h, "Sequence split") and
// the pieces kernel (selective_scan_pieces.h). The plan (split_plan, auto_pieces) is in
// selective_scan_params.h, for the host-side launcher. Written once for the GPU and the host.

#include <cstdint>

#include "common/host_device.h"
#include "selective_scan/selective_scan_params.h"

namespace effarch::kernels::scan {

// The workspace's entries (SelectiveScanParams::split_states, split_dtsum): slot 0 the initial
// state, slot q >= 1 the end state of piece q - 1 from zeros and its sum of dt.
EFFARCH_HD int64_t split_state_index(const SelectiveScanParams& p, int batch, int slot, int state, int channel) {
  return ((static_cast<int64_t>(batch) * p.pieces + slot) * p.dstate + state) * p.dim + channel;
}
EFFARCH_HD int64_t split_dtsum_index(const SelectiveScanParams& p, int batch, int slot, int channel) {
  return (static_cast<int64_t>(batch) * p.pieces + slot) * p.dim + channel;
}

// The steps of piece `piece`: [begin, end), in chunks of chunk_steps(seg); the last piece (the only
// one without a split) ends at the sequence's end.
EFFARCH_HD int64_t piece_begin(const SelectiveScanParams& p, int piece, int seg) {
  return static_cast<int64_t>(piece) * p.piece_chunks * chunk_steps(seg);
}
EFFARCH_HD int64_t piece_end(const SelectiveScanParams& p, int piece, int seg) {
  const int64_t end = piece_begin(p, piece + 1, seg);
  return piece + 1 == p.pieces || end > p.seqlen ? p.seqlen : end;
}

}  // namespace effarch::kernels::scan
