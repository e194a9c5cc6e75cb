// oneDNN (Debian libdnnl-dev) types and the function signatures TensorCore resolves with dlsym.
// Nothing is linked: libdnnl.so.2 and its OpenMP runtime are opened at first use, so a host that
// lacks them still runs ferry's runner side.
#ifndef FERRY_CDNNL_SHIM_H
#define FERRY_CDNNL_SHIM_H
#include <dnnl.h>

typedef dnnl_status_t (*ferry_dnnl_sgemm_fn)(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N,
    dnnl_dim_t K, float alpha, const float *A, dnnl_dim_t lda, const float *B, dnnl_dim_t ldb,
    float beta, float *C, dnnl_dim_t ldc);
typedef const dnnl_version_t *(*ferry_dnnl_version_fn)(void);
typedef dnnl_cpu_isa_t (*ferry_dnnl_get_effective_cpu_isa_fn)(void);
typedef void (*ferry_omp_set_num_threads_fn)(int);
typedef int (*ferry_omp_get_max_threads_fn)(void);
typedef int (*ferry_omp_get_thread_num_fn)(void);
typedef int (*ferry_omp_get_num_threads_fn)(void);
// libgomp's ABI for `#pragma omp parallel`: our own kernels run on oneDNN's OpenMP team, so the
// two never fight over cores (an idle OpenMP team spins for a while after each region).
typedef void (*ferry_gomp_task_fn)(void *data);
typedef void (*ferry_gomp_parallel_fn)(ferry_gomp_task_fn fn, void *data, unsigned num_threads, unsigned flags);

#endif
