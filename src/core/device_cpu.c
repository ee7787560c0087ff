/* device_cpu.c — device queries of a build without CUDA: no CUDA device exists.
 * Replaced by src/cuda/device.cu when CUDA is compiled in.
 */
int nsa_device_cuda_count(void);
int nsa_device_cuda_count(void) { return 0; }
