/*
 * fuzz_config: libFuzzer target for the config.json parser.
 *
 * Every input either parses into a configuration the engine accepts, or fails
 * with one line starting with "config.json:".
 */
#include <stdint.h>
#include <string.h>

#include <mechbench/model.h>

#define NAME "config.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_engine_config c;
	mb_error err;

	mb_error_clear(&err);
	if (mb_model_config_parse(&c, (const char *)data, size, NAME, &err) < 0) {
		if (err.code >= 0 || strncmp(err.msg, NAME ":", strlen(NAME) + 1) != 0 ||
		    strchr(err.msg, '\n') != NULL)
			__builtin_trap();
		return 0;
	}
	if (mb_engine_config_check(&c, NULL) != 0)
		__builtin_trap();
	return 0;
}
