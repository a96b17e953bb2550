// The chunked SSD (state-space duality) form of the Mamba-2 scan for training, forward and
// backward, for one layer of one row of T tokens (CPU f32, n_groups = 1: one B and one C shared
// by all H heads). Glossary as in mamba2_mixer_grad.h (P head dim, N state, di = H*P, C = di +
// 2N the xBC width, Q the chunk length). Per head h, with a = -exp(A_log[h]):
//   S_t = exp(dt_t a) S_{t-1} + dt_t x_t B_t^T;  y_t = S_t C_t + D[h] x_t       S [P, N]
// computed chunk by chunk: inside a chunk of q <= Q tokens the quadratic form
//   y = (Em o G o dt) x + cum o (C S_in^T) + D x,   G = C B^T [q, q],
//   Em[i, j] = prod_{j<k<=i} exp(dt_k a), cum[i] = prod_{k<=i} exp(dt_k a),
// and the state leaving it S_out = cum[q-1] S_in + sum_s Em[q-1, s] dt_s x_s B_s^T.
//
// Two implementations of the same math:
//   SsdForward / SsdBackward: the fast path. Everything that does not depend on the head's
//     decay matrix runs as one product over all heads' columns per chunk (G; C S_in^T for all
//     heads [q, di]; the state update (x o w)^T B for all heads [di, N]; in the backward B dS^T,
//     (x o w) dS, (dy o cum) S_in, (dy o cum)^T C). Only y_h = W_h x_h and its two gradient
//     products stay per head: for head dims that are multiples of 16 as 16-float vector loops over
//     W's lower triangle only (else Gemm). The products over all heads run as SsdProduct (below)
//     when P and N are multiples of 16 and their depths at most kSsdProductMaxK, else as sgemm
//     (3 calls per chunk forward, 8 backward; with P % 16 != 0: H+3 and 2H+8).
//   SsdForwardPerHead / SsdBackwardPerHead: the plain reference, every product per head (3H+1
//     forward, ~6H+3 backward): the code the trainer used before the batched form.
// They agree to float rounding, not bit for bit (OpenBLAS's result for one output element
// depends on the call's shape, and the batched form sums some terms in another order).
//
// Thread safety: pure functions of their arguments; distinct rows may run concurrently with
// distinct scratch and output buffers.
#ifndef TAPELOOP_ENGINE_TRAIN_SSD_H_
#define TAPELOOP_ENGINE_TRAIN_SSD_H_

#include <cstdint>

namespace tapeloop::engine::train {

struct SsdDims {
  int64_t T = 0, H = 0, P = 0, N = 0, Q = 64;

  int64_t di() const { return H * P; }
  int64_t C() const { return di() + 2 * N; }  // xBC row stride
  int64_t nch() const { return (T + Q - 1) / Q; }
};

// Floats of scratch SsdForward / SsdBackward (and the per-head versions) need.
int64_t SsdScratchSize(const SsdDims& d);

// xbc f32 [T, C] (x [T, H, P] | B [T, N] | C [T, N] per row); dtT f32 [H, T] (dt transposed);
// a_log, dskip f32 [H]; S f32 [nch + 1, H, P, N] with S[0] the incoming state (read only when
// has_init; the rest is written: S[c + 1] the state after chunk c); y f32 [T, di] overwritten
// (includes D x).
void SsdForward(const SsdDims& d, const float* xbc, const float* dtT, const float* a_log,
                const float* dskip, float* S, float* y, float* scratch, bool has_init);
void SsdForwardPerHead(const SsdDims& d, const float* xbc, const float* dtT, const float* a_log,
                       const float* dskip, float* S, float* y, float* scratch, bool has_init);

// Backward of SsdForward given dy = d loss / d y (f32 [T, di]) and the S the forward pass
// filled. ADDS into dxbc f32 [T, C] (x, B and C parts), ddtT f32 [H, T], da_log and dD f32 [H].
// No gradient flows into the incoming state.
void SsdBackward(const SsdDims& d, const float* xbc, const float* dtT, const float* a_log,
                 const float* dskip, const float* S, const float* dy, float* dxbc, float* ddtT,
                 float* da_log, float* dD, float* scratch, bool has_init);
void SsdBackwardPerHead(const SsdDims& d, const float* xbc, const float* dtT, const float* a_log,
                        const float* dskip, const float* S, const float* dy, float* dxbc,
                        float* ddtT, float* da_log, float* dD, float* scratch, bool has_init);

// The batched path's small products over all heads' columns, exposed for their test:
//   Cm[i, j] = (accumulate ? Cm[i, j] : 0) + sum_{k < K} A[i sai + k sak] B[k ldb + j]
// for i < M, j < Nc (row strides ldb, ldc; B readable to RoundUp16(Nc) columns per row), each sum
// a chain of fused multiply-adds from 0 in k order on AVX-512 (plain multiply-adds elsewhere),
// then added to Cm. On AVX-512 with OpenBLAS's SkylakeX kernels that is what sgemm computes for
// each element of these shapes (checked by Ssd.ProductMatchesSgemm) while K is within its block
// depth (at least kSsdProductMaxK); not for A B^T (sgemm's NT form) deeper than 16, where its
// small-matrix kernel sums in another order. So SsdForward / SsdBackward call this in place of
// sgemm, for N and P multiples of 16, K <= kSsdProductMaxK, and their NT products (C B^T, C
// S_in^T, B dS^T, of depth N) only with N = 16, with the same results bit for bit and without
// sgemm's packing and zeroing of these 64 x 16 x 256-sized products.
constexpr int64_t kSsdProductMaxK = 256;
void SsdProduct(int64_t M, int64_t Nc, int64_t K, const float* A, int64_t sai, int64_t sak,
                const float* B, int64_t ldb, bool accumulate, float* Cm, int64_t ldc);

}  // namespace tapeloop::engine::train

#endif  // TAPELOOP_ENGINE_TRAIN_SSD_H_
