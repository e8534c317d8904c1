/*
 * ptbin.h: read PyTorch's zip checkpoint format (torch.save of a state dict,
 * the `pytorch_model.bin` that Hugging Face revisions carry) without running
 * any Python: a zip reader (STORED entries only, ZIP64 records) and a pickle
 * interpreter that knows exactly the few globals a state dict uses.
 *
 * Archive: `<prefix>/data.pkl` (the pickle), `<prefix>/data/<key>` (one
 * uncompressed blob per storage), `<prefix>/version`, maybe
 * `<prefix>/byteorder` ("little"; "big" is refused).
 *
 * Pickle: protocol 2 and the protocol-4 opcodes (FRAME, SHORT_BINUNICODE,
 * STACK_GLOBAL, MEMOIZE, ...). Allowed globals: collections.OrderedDict (with
 * BUILD of its _metadata, ignored), torch._utils._rebuild_tensor_v2 and the
 * storage types torch.{Float,Half,BFloat16,Double,Int,Long,Byte,Bool}Storage
 * (persistent ids ('storage', type, key, location, numel)). Any other global
 * or opcode is an error naming the file and the global or opcode: nothing is
 * ever called. The top-level object must be a dict of name -> tensor; each
 * tensor must describe contiguous memory (strides of size-1 dimensions are
 * free) inside its storage.
 */
#ifndef MECHBENCH_PTBIN_H
#define MECHBENCH_PTBIN_H

#include <stddef.h>

#include <mechbench/error.h>
#include <mechbench/safetensors.h>

/* Converts a PyTorch zip checkpoint held in buf (len bytes) into a
 * safetensors image: *out (malloc'd, caller frees) of *out_len bytes, which
 * mb_safetensors_open_mem reads. Tensors keep their dtype and the state
 * dict's order; tensors that share a storage (tied weights) each get their
 * own copy of the bytes. name labels errors ("pytorch_model.bin: data.pkl:
 * opcode 0x63 ..."). Codes: MB_EINVALID (malformed or unsupported),
 * MB_ENOMEM. *out is NULL on failure. */
int mb_ptbin_to_safetensors_mem(void **out, size_t *out_len, const void *buf, size_t len,
                                const char *name, mb_error *err);

/* The same for the file at path (mapped read-only while converting, so the
 * peak is the file plus the image). MB_ENOTFOUND when there is no file,
 * MB_EIO when it cannot be read. */
int mb_ptbin_to_safetensors(void **out, size_t *out_len, const char *path, mb_error *err);

/* Opens the file at path as a safetensors view (mb_safetensors_open_view)
 * over its read-only mapping: no tensor byte is copied, tensors of one storage
 * share bytes, and mb_safetensors_release drops a converted tensor's pages,
 * so loading needs the weights plus about one tensor, as a safetensors file
 * does. Errors as mb_ptbin_to_safetensors. */
int mb_ptbin_open(mb_safetensors **out, const char *path, mb_error *err);
/* The same view over a caller-owned buffer that must outlive the object. */
int mb_ptbin_open_mem(mb_safetensors **out, const void *buf, size_t len, const char *name,
                      mb_error *err);

#endif
