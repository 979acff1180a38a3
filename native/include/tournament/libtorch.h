// The part of libtorch the contract is written in, and what every plugin gets
// without asking: tensors and their ops (ATen), autograd (custom Functions
// included), nn::Module and ModuleList, nn::functional, torch::cuda. The
// validator compiles every submission with exactly this precompiled (src/harness/compile.ts).
//
// Why not <torch/torch.h>: GCC instantiates, in every file that includes a
// header, the templates that the header's inline functions use, and a
// precompiled header does not keep those instantiations. With all of
// torch/torch.h precompiled instead, a plugin's compile took 30 to 38% more
// CPU (the baseline 11.7 s against 7.3, a small cheat 7.4 against 5.2; GCC 12,
// libtorch 1.13, 2-core CPU machine, 2026-12-04). A submission that needs
// more (torch/data, torch/serialize, torch::optim, torch/csrc/...) includes
// it itself and pays for parsing it.
#pragma once

#include <torch/types.h>
#include <torch/autograd.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/nn/functional.h>
#include <torch/nn/modules/container/modulelist.h>
