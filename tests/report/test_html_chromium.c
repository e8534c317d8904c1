/*
 * The HTML reports in a real browser: Debian's headless Chromium opens the
 * drift report of a series with a planted change, a run's report and the
 * leaderboard page, offline, and
 *   - logs no console message (the pages have no scripts, so any message is
 *     an error: a blocked fetch, a CSP violation, a parse error);
 *   - has the plots in its DOM (<svg> elements, none from data: a checkpoint
 *     folder named with markup shows up as text, never as an element);
 *   - paints them: the PNG screenshot (decoded here with zlib) holds the
 *     pixels of the plots' colours (the drift line's blue, the band-exit
 *     markers' green, the heatmaps' viridis yellow and PuOr orange).
 * The screenshots are kept under the build folder (report-screenshots/) for
 * people to look at. Skips, saying why, only when chromium is absent; CI
 * installs it (ci/setup).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "support/harness_support.h"
#include "support/report_support.h"

#define CHROMIUM                                                                            \
	"timeout 120 chromium --headless --no-sandbox --disable-gpu "                           \
	"--disable-background-networking --disable-component-update --disable-sync "           \
	"--no-first-run --disable-extensions --hide-scrollbars --force-device-scale-factor=1 " \
	"--user-data-dir=\"$(mktemp -d)\" "

static char dir[256];

static void setup(void)
{
	mbt_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(html_chromium, .init = setup, .fini = teardown, .timeout = 600);

static void need_chromium(void)
{
	MBT_NEED_TOOL("chromium", "the HTML report cannot be checked in a browser here (Debian "
		      "package 'chromium')");
}

/* --- a small PNG reader (8-bit RGB/RGBA, not interlaced: what Chromium writes) --------------- */

typedef struct image {
	uint32_t w, h;
	unsigned char *rgb; /* (h, w, 3) */
} image;

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
	int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

static void read_png(image *img, const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *file, *idat = NULL, *raw;
	size_t len, n_idat = 0, pos = 8;
	uLongf raw_len;
	int channels = 0;

	cr_assert(f, "no screenshot at %s", path);
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	file = malloc(len);
	cr_assert_eq(fread(file, 1, len, f), len);
	fclose(f);
	cr_assert(len > 8 && memcmp(file, "\x89PNG\r\n\x1a\n", 8) == 0, "%s is not a PNG", path);
	memset(img, 0, sizeof(*img));
	while (pos + 12 <= len) {
		uint32_t clen = be32(file + pos);
		const unsigned char *type = file + pos + 4, *data = file + pos + 8;
		cr_assert_leq(pos + 12 + clen, len, "truncated PNG chunk");
		if (memcmp(type, "IHDR", 4) == 0) {
			img->w = be32(data);
			img->h = be32(data + 4);
			cr_assert_eq(data[8], 8, "bit depth %d", data[8]);
			cr_assert(data[9] == 2 || data[9] == 6, "colour type %d", data[9]);
			cr_assert_eq(data[12], 0, "interlaced PNG");
			channels = data[9] == 2 ? 3 : 4;
		} else if (memcmp(type, "IDAT", 4) == 0) {
			idat = realloc(idat, n_idat + clen);
			memcpy(idat + n_idat, data, clen);
			n_idat += clen;
		}
		pos += 12 + clen;
	}
	cr_assert(channels && n_idat, "no image data in %s", path);
	raw_len = (uLongf)img->h * (1 + (uLongf)img->w * (uLongf)channels);
	raw = malloc(raw_len);
	cr_assert_eq(uncompress(raw, &raw_len, idat, (uLong)n_idat), Z_OK, "bad zlib stream");
	img->rgb = malloc((size_t)img->w * img->h * 3);
	{
		size_t stride = (size_t)img->w * (size_t)channels;
		unsigned char *prev = calloc(stride, 1), *cur = malloc(stride);
		for (uint32_t y = 0; y < img->h; y++) {
			const unsigned char *line = raw + (size_t)y * (stride + 1);
			int filter = line[0];
			for (size_t i = 0; i < stride; i++) {
				int a = i >= (size_t)channels ? cur[i - (size_t)channels] : 0;
				int b = prev[i];
				int c = i >= (size_t)channels ? prev[i - (size_t)channels] : 0;
				int x = line[1 + i];
				switch (filter) {
				case 1: x += a; break;
				case 2: x += b; break;
				case 3: x += (a + b) / 2; break;
				case 4: x += paeth(a, b, c); break;
				default: break;
				}
				cur[i] = (unsigned char)x;
			}
			for (uint32_t px = 0; px < img->w; px++)
				memcpy(img->rgb + ((size_t)y * img->w + px) * 3, cur + (size_t)px * channels,
				       3);
			memcpy(prev, cur, stride);
		}
		free(prev);
		free(cur);
	}
	free(raw);
	free(idat);
	free(file);
}

/* Pixels within tol (per channel) of colour (r, g, b). */
static size_t count_colour(const image *img, int r, int g, int b, int tol)
{
	size_t n = 0;
	for (size_t i = 0; i < (size_t)img->w * img->h; i++) {
		const unsigned char *p = img->rgb + i * 3;
		if (abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol)
			n++;
	}
	return n;
}

/* --- the pages ----------------------------------------------------------------------------- */

/* Opens page.html: screenshot to page.png, console to page.log, DOM to
 * page.dom; fails on any console message. Returns the DOM (malloc'd). */
static char *open_page(const char *page, const char *size)
{
	char cmd[2048], *log = NULL, *dom = NULL;
	int rc;

	snprintf(cmd, sizeof(cmd),
		 CHROMIUM "--enable-logging=stderr --v=0 --window-size=%s --screenshot=%s/%s.png "
			  "file://%s/%s.html > %s.log 2>&1",
		 size, dir, page, dir, page, page);
	rc = mbt_sh(dir, cmd, NULL);
	snprintf(cmd, sizeof(cmd), "cat %s.log", page);
	mbt_sh(dir, cmd, &log);
	cr_assert_eq(rc, 0, "chromium failed on %s.html (exit %d): %s", page, rc, log);
	cr_expect_null(strstr(log, "CONSOLE"), "%s.html logged to the console: %s", page, log);
	cr_expect_null(strstr(log, "Refused to"), "%s.html: a blocked resource: %s", page, log);
	free(log);
	snprintf(cmd, sizeof(cmd), CHROMIUM "--dump-dom file://%s/%s.html 2>/dev/null", dir, page);
	cr_assert_eq(mbt_sh(dir, cmd, &dom), 0, "chromium --dump-dom failed on %s.html", page);
	/* keep the screenshot for people to look at */
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/report-screenshots' && cp %s.png '%s/report-screenshots/'",
		 MB_BINARY_DIR, page, MB_BINARY_DIR);
	mbt_sh(dir, cmd, NULL);
	return dom;
}

static void make_pages(void)
{
	mbt_demo_suite(dir, 50);
	/* A checkpoint folder whose name is markup: the page must show it as text. */
	mbt_series(dir, "ck<b>x</b>", 10, 100, 6, 0.3, 1.0, 0.03, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series 'ck<b>x</b>' --name planted --db m.db "
		 "--html series.html --quiet > /dev/null");
	mbt_sh_ok(dir, MBT_CLI "report --run 8 --db m.db --html run.html");
	mbt_sh_ok(dir, MBT_CLI "leaderboard --db m.db --format html --out board.html");
}

Test(html_chromium, drift_report_opens_without_errors_and_shows_its_plots)
{
	char *dom, *html = NULL;
	image img;
	size_t blue, green, grey_band;

	need_chromium();
	make_pages();
	cr_assert_eq(mbt_sh(dir, "cat series.html", &html), 0);
	cr_expect_null(strstr(html, "<script"));
	cr_expect_null(strstr(html, "src="));
	cr_expect_null(strstr(html, "<b>x</b>"), "markup from a folder name reached the page");
	free(html);
	dom = open_page("series", "1200,2400");
	/* 3 drift lines, and 3 figures for each of the checkpoints shown */
	cr_expect_geq(mbt_count(dom, "<svg "), 3 + 3 * 3, "%zu svg elements",
		      mbt_count(dom, "<svg "));
	cr_expect_eq(mbt_count(dom, "<b>x</b>"), 0, "an element from data in the DOM");
	cr_expect_gt(mbt_count(dom, "ck&lt;b&gt;x&lt;/b&gt;"), 0, "the folder name is not shown");
	free(dom);
	{
		char png[512];
		snprintf(png, sizeof(png), "%s/series.png", dir);
		read_png(&img, png);
	}
	/* The drift line and its CI band (#0072B2), the band-exit markers
	 * (#009E73), the registered band's grey. */
	blue = count_colour(&img, 0x00, 0x72, 0xB2, 6);
	green = count_colour(&img, 0x00, 0x9E, 0x73, 6);
	grey_band = count_colour(&img, 0xE4, 0xE4, 0xE4, 3);
	printf("series.png %ux%u: %zu line-blue, %zu marker-green, %zu band-grey pixels\n", img.w,
	       img.h, blue, green, grey_band);
	cr_expect_gt(blue, 500, "the drift lines are not painted (%zu blue pixels)", blue);
	cr_expect_gt(green, 100, "no band-exit markers painted (%zu green pixels)", green);
	free(img.rgb);
}

Test(html_chromium, run_report_and_leaderboard_open_without_errors_and_paint_the_figures)
{
	char *dom, png[512];
	image img;
	size_t yellow, orange, stem;

	need_chromium();
	make_pages();
	dom = open_page("run", "1000,2600");
	cr_expect_eq(mbt_count(dom, "<svg "), 3, "%zu svg elements", mbt_count(dom, "<svg "));
	free(dom);
	snprintf(png, sizeof(png), "%s/run.png", dir);
	read_png(&img, png);
	/* viridis' top (accuracy 1), PuOr's orange side (positive scores), the
	 * spectrum's stems */
	yellow = count_colour(&img, 253, 231, 37, 8);
	orange = count_colour(&img, 0xE0, 0x82, 0x14, 40);
	stem = count_colour(&img, 0x00, 0x72, 0xB2, 6);
	printf("run.png %ux%u: %zu viridis-yellow, %zu orange, %zu stem-blue pixels\n", img.w, img.h,
	       yellow, orange, stem);
	cr_expect_gt(yellow, 1000, "the accuracy heatmap is not painted (%zu)", yellow);
	cr_expect_gt(orange, 1000, "the score heatmap is not painted (%zu)", orange);
	cr_expect_gt(stem, 100, "the spectrum is not painted (%zu)", stem);
	free(img.rgb);
	dom = open_page("board", "1400,1200");
	cr_expect_eq(mbt_count(dom, "<table>"), 1);
	cr_expect_eq(mbt_count(dom, "<tr>"), 11, "a header and 10 checkpoints");
	free(dom);
}
