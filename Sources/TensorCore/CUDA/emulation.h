// Runs kernels.cu on the CPU for ferry's mock CUDA driver: compiled with
// g++ -std=c++20 -O2 -shared -fPIC -pthread -include emulation.h kernels.cu.
// threadIdx/blockIdx are thread-local; blocks run one after another, so `__shared__` is `static`.
// A kernel exported with EMU_EXPORT runs its threads as a plain loop (it must not call
// __syncthreads); EMU_EXPORT_SYNC runs each CUDA thread of a block as an OS thread and
// __syncthreads is a std::barrier, so a missing barrier is a real data race (ThreadSanitizer sees it).
#pragma once
#define FERRY_EMULATION 1
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <barrier>
#include <thread>
#include <utility>
#include <type_traits>
#include <vector>

typedef long long i64;
typedef unsigned long long u64;
struct dim3 { unsigned x, y, z; };

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* emu_barrier = nullptr;
inline const char* emu_kernel_name = "";

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

// CUDA's integer intrinsics that kernels.cu uses.
inline u64 __umul64hi(u64 a, u64 b) { return (u64)(((unsigned __int128)a * b) >> 64); }

inline void __syncthreads() {
    if (!emu_barrier) {
        fprintf(stderr, "ferry mock CUDA: kernel %s calls __syncthreads but is exported with EMU_EXPORT; use EMU_EXPORT_SYNC\n", emu_kernel_name);
        abort();
    }
    emu_barrier->arrive_and_wait();
}

template <class... A, size_t... I>
inline void emu_call(void (*k)(A...), void** p, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}

template <class... A>
inline void emu_run_loop(void (*k)(A...), dim3 g, dim3 b, void** p) {
    gridDim = g; blockDim = b;
    for (unsigned bz = 0; bz < g.z; ++bz) for (unsigned by = 0; by < g.y; ++by) for (unsigned bx = 0; bx < g.x; ++bx) {
        blockIdx = {bx, by, bz};
        for (unsigned tz = 0; tz < b.z; ++tz) for (unsigned ty = 0; ty < b.y; ++ty) for (unsigned tx = 0; tx < b.x; ++tx) {
            threadIdx = {tx, ty, tz};
            emu_call(k, p, std::index_sequence_for<A...>{});
        }
    }
}

template <class... A>
inline void emu_run_sync(void (*k)(A...), dim3 g, dim3 b, void** p) {
    gridDim = g; blockDim = b;
    const unsigned nt = b.x * b.y * b.z;
    std::barrier<> bar((std::ptrdiff_t)nt);
    emu_barrier = &bar;
    std::vector<std::thread> threads;
    threads.reserve(nt);
    for (unsigned t = 0; t < nt; ++t) {
        threads.emplace_back([=, &bar] {
            threadIdx = {t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
            for (unsigned bz = 0; bz < g.z; ++bz) for (unsigned by = 0; by < g.y; ++by) for (unsigned bx = 0; bx < g.x; ++bx) {
                blockIdx = {bx, by, bz};
                emu_call(k, p, std::index_sequence_for<A...>{});
                bar.arrive_and_wait();   // the block ends before the next one reuses __shared__
            }
        });
    }
    for (auto& t : threads) t.join();
    emu_barrier = nullptr;
}

#define EMU_EXPORT(name) \
    extern "C" void emu_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void** p) { \
        emu_kernel_name = #name; emu_run_loop(name, dim3{gx, gy, gz}, dim3{bx, by, bz}, p); }
#define EMU_EXPORT_SYNC(name) \
    extern "C" void emu_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void** p) { \
        emu_kernel_name = #name; emu_run_sync(name, dim3{gx, gy, gz}, dim3{bx, by, bz}, p); }
