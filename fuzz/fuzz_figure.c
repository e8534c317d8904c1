/* fuzz_figure.c: libFuzzer target for stored figures (figure.h) and the SVG
 * writer that draws them: what parses must render to JSON and parse back to
 * the same values, and must draw (or be refused) without a fault. Seeds:
 * fuzz/corpus/figure/. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <mechbench/figure.h>
#include <mechbench/svg.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_figure_list l, back;
	mb_error err;
	json_t *doc = json_loadb((const char *)data, size, 0, NULL), *again;

	memset(&l, 0, sizeof(l));
	memset(&back, 0, sizeof(back));
	if (!doc)
		return 0;
	if (mb_figure_list_add_json(&l, doc, "fuzz", &err) == 0) {
		const mb_figure *f = &l.items[0];
		char *buf = NULL;
		size_t len = 0;
		FILE *out;
		again = mb_figure_to_json(f);
		if (!again || mb_figure_list_add_json(&back, again, "again", &err) < 0)
			__builtin_trap();
		for (size_t i = 0; i < f->rows * f->cols; i++)
			if (isnan(f->values[i]) != isnan(back.items[0].values[i]) ||
			    (!isnan(f->values[i]) && f->values[i] != back.items[0].values[i]))
				__builtin_trap();
		json_decref(again);
		out = open_memstream(&buf, &len);
		if (out) {
			mb_svg_write_figure(out, f, &err);
			fclose(out);
			free(buf);
		}
	}
	mb_figure_list_dispose(&l);
	mb_figure_list_dispose(&back);
	json_decref(doc);
	return 0;
}
