// Per-example weight gradients of a 2-D convolution by one grouped backward-weights call:
// the batch becomes the groups (input (1, N*C, H, W), output gradient (1, N*Cout, Ho, Wo),
// groups = N), so libtorch's convolution backward (oneDNN on the CPU, cuDNN on a GPU) computes
// every example's weight gradient (N*Cout, C, k, k) at once. tch 0.24 does not expose
// at::convolution_backward; this is the only C++ in fool. The tensors cross as at::Tensor*,
// which is what tch's C_tensor is.
#include <ATen/ATen.h>

#include <cstring>
#include <exception>

extern "C" at::Tensor *fool_per_example_conv_weight_grad(const at::Tensor *grad_out,
                                                         const at::Tensor *input, int64_t kernel,
                                                         int64_t stride, int64_t padding,
                                                         char *err, size_t err_len) {
  try {
    const at::Tensor &x = *input;
    const at::Tensor &g = *grad_out;
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    const int64_t cout = g.size(1), ho = g.size(2), wo = g.size(3);
    auto xg = x.reshape({1, n * c, h, w});
    auto gg = g.reshape({1, n * cout, ho, wo});
    // Only the weight's sizes and options matter to the weight gradient.
    auto weight = at::empty({n * cout, c, kernel, kernel}, x.options());
    auto grads = at::convolution_backward(gg, xg, weight, c10::nullopt, {stride, stride},
                                          {padding, padding}, {1, 1}, false, {0, 0}, n,
                                          {false, true, false});
    return new at::Tensor(std::get<1>(grads).view({n, cout, c, kernel, kernel}));
  } catch (const std::exception &e) {
    if (err_len > 0) {
      std::strncpy(err, e.what(), err_len - 1);
      err[err_len - 1] = '\0';
    }
    return nullptr;
  }
}
