/* Zoo recipes, data generators and the MANIFEST. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/ioi_templates.h>
#include <mechbench/zoo.h>

Test(zoo, modadd_split_partitions_all_pairs_by_seed_and_fraction)
{
	uint32_t *tr, *te, *tr2, *te2;
	size_t ntr, nte, ntr2, nte2;
	mb_error err;
	const int p = 23;

	cr_assert_eq(mb_zoo_modadd_split(&tr, &ntr, &te, &nte, p, 0.3, 7, &err), 0, "%s", err.msg);
	cr_expect_eq(ntr, 159); /* round(0.3 * 529) */
	cr_expect_eq(ntr + nte, (size_t)(p * p));
	unsigned char *seen = calloc((size_t)(p * p), 1);
	for (size_t i = 0; i < ntr; i++) {
		cr_expect(i == 0 || tr[i] > tr[i - 1], "train pairs sorted, distinct");
		seen[tr[i]]++;
	}
	for (size_t i = 0; i < nte; i++) {
		cr_expect(i == 0 || te[i] > te[i - 1], "test pairs sorted, distinct");
		seen[te[i]]++;
	}
	for (int i = 0; i < p * p; i++)
		cr_expect_eq(seen[i], 1, "pair %d appears %d times", i, seen[i]);
	/* Same seed: same split; another seed: another split. */
	cr_assert_eq(mb_zoo_modadd_split(&tr2, &ntr2, &te2, &nte2, p, 0.3, 7, &err), 0);
	cr_expect(ntr2 == ntr && memcmp(tr, tr2, ntr * sizeof(*tr)) == 0);
	free(tr2);
	free(te2);
	cr_assert_eq(mb_zoo_modadd_split(&tr2, &ntr2, &te2, &nte2, p, 0.3, 8, &err), 0);
	cr_expect(memcmp(tr, tr2, ntr * sizeof(*tr)) != 0);
	free(tr2);
	free(te2);
	free(tr);
	free(te);
	free(seen);
	cr_expect_eq(mb_zoo_modadd_split(&tr, &ntr, &te, &nte, p, 1.0, 7, &err), MB_EINVALID);
	cr_expect_eq(mb_zoo_modadd_split(&tr, &ntr, &te, &nte, p, 0.0001, 7, &err), MB_EINVALID);
}

Test(zoo, modadd_tokens_are_a_b_equals_and_target_is_the_sum_mod_p)
{
	int32_t t[3];
	mb_zoo_modadd_tokens(t, 113, 5 * 113 + 110);
	cr_expect(t[0] == 5 && t[1] == 110 && t[2] == 113);
	cr_expect_eq(mb_zoo_modadd_target(113, 5 * 113 + 110), 2);
	cr_expect_eq(mb_zoo_modadd_target(113, 0), 0);
	cr_expect_eq(mb_zoo_modadd_target(113, 112 * 113 + 112), 111);
}

Test(zoo, induction_sequences_repeat_one_off_topic_segment_over_topic_background)
{
	/* the preset, then the same with part of the background off-topic */
	for (int variant = 0; variant < 2; variant++) {
	mb_zoo_recipe r;
	mb_error err;
	cr_assert_eq(mb_zoo_recipe_get(&r, "induction", "fast", 3, &err), 0, "%s", err.msg);
	if (variant == 1)
		r.topic_frac = 0.6;
	int T = r.n_positions, V = r.vocab_size, K = r.n_topics;
	int32_t *a = malloc((size_t)T * sizeof(int32_t)), *b = malloc((size_t)T * sizeof(int32_t));
	int lens_seen[64] = {0}, topics_seen[64] = {0};
	double bg = 0, bg_topic = 0, expect = 0;
	cr_assert(K >= 2 && K <= 64);
	for (uint64_t idx = 0; idx < 400; idx++) {
		mb_zoo_segment s, s2;
		int ntop = 0;
		mb_zoo_induction_sequence(a, &s, &r, "induction/train", idx);
		mb_zoo_induction_sequence(b, &s2, &r, "induction/train", idx);
		cr_assert(memcmp(a, b, (size_t)T * sizeof(int32_t)) == 0, "pure function of index");
		cr_assert_eq(a[0], 0, "BOS first");
		cr_assert(s.len >= r.seg_min && s.len <= r.seg_max);
		cr_assert(s.first >= 1 && s.first + s.len <= s.second && s.second + s.len <= T);
		cr_assert(s.topic >= 0 && s.topic < K);
		lens_seen[s.len] = 1;
		topics_seen[s.topic] = 1;
		for (int t = 1; t < V; t++)
			ntop += mb_zoo_token_topic(t, V, K) == s.topic;
		for (int j = 0; j < s.len; j++)
			cr_assert_eq(a[s.second + j], a[s.first + j]);
		for (int i = 1; i < T; i++) {
			int in_first = i >= s.first && i < s.first + s.len;
			int in_second = i >= s.second && i < s.second + s.len;
			cr_assert(a[i] >= 1 && a[i] < V, "no BOS after position 0");
			if (in_first) {
				/* S: distinct, off-topic, nowhere but its two copies */
				cr_assert_neq(mb_zoo_token_topic(a[i], V, K), s.topic);
				for (int k = 1; k < T; k++)
					if (k != i && k != s.second + (i - s.first))
						cr_assert_neq(a[i], a[k], "seq %llu: S token at %d repeats at %d",
							      (unsigned long long)idx, i, k);
			} else if (!in_second) {
				bg++;
				bg_topic += mb_zoo_token_topic(a[i], V, K) == s.topic;
			}
		}
		/* P(background token in the topic) = topic_frac + (1 - topic_frac) *
		 * ntop / (V - 1 - |S|) */
		expect += (T - 1 - 2 * s.len) *
			  (r.topic_frac + (1 - r.topic_frac) * ntop / (double)(V - 1 - s.len));
	}
	for (int l = r.seg_min; l <= r.seg_max; l++)
		cr_expect(lens_seen[l], "segment length %d never drawn in 400 sequences", l);
	for (int c = 0; c < K; c++)
		cr_expect(topics_seen[c], "topic %d never drawn in 400 sequences", c);
	printf("topic_frac %g: background tokens in the topic %.4f (expected %.4f, %g tokens)\n",
	       r.topic_frac, bg_topic / bg, expect / bg, bg);
	cr_expect(fabs(bg_topic / bg - expect / bg) < 0.02, "topic share %g, expected %g",
		  bg_topic / bg, expect / bg);
	mb_zoo_segment s;
	mb_zoo_induction_sequence(b, &s, &r, "induction/eval", 0);
	cr_expect(memcmp(a, b, (size_t)T * sizeof(int32_t)) != 0, "streams differ");
	free(a);
	free(b);
	}
}

Test(zoo, token_topics_are_contiguous_blocks_of_nearly_equal_size)
{
	int count[8] = {0}, last = 0;
	for (int t = 1; t < 128; t++) {
		int c = mb_zoo_token_topic(t, 128, 8);
		cr_assert(c >= last && c < 8, "token %d: topic %d after %d", t, c, last);
		count[c]++;
		last = c;
	}
	for (int c = 0; c < 8; c++)
		cr_expect(count[c] == 15 || count[c] == 16, "topic %d has %d tokens", c, count[c]);
}

Test(zoo, repeated_tokens_are_bos_then_r_twice)
{
	int32_t t[2 * 20 + 1];
	mb_zoo_repeated_tokens(t, 20, 128, 1, 0);
	cr_expect_eq(t[0], 0);
	for (int i = 0; i < 20; i++) {
		cr_expect(t[1 + i] >= 1 && t[1 + i] < 128);
		cr_expect_eq(t[21 + i], t[1 + i]);
	}
}

Test(zoo, recipes_have_the_documented_presets)
{
	mb_zoo_recipe r;
	mb_error err;
	cr_assert_eq(mb_zoo_recipe_get(&r, "modadd", "paper", 0, &err), 0, "%s", err.msg);
	/* Nanda et al. 2023. */
	cr_expect(r.p == 113 && r.train_frac == 0.3 && r.n_layer == 1 && r.n_embd == 128 &&
		  r.n_head == 4 && r.n_inner == 512 && !r.layer_norm && !r.tie_word_embeddings &&
		  strcmp(r.activation, "relu") == 0 && r.batch_size == 0);
	cr_expect(r.adamw.lr == 1e-3 && r.adamw.weight_decay == 1.0 && r.adamw.beta1 == 0.9 &&
		  r.adamw.beta2 == 0.98);
	cr_expect(r.vocab_size == 114 && r.n_positions == 3);
	cr_assert_eq(mb_zoo_recipe_get(&r, "modadd", "fast", 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_zoo_recipe_get(&r, "induction", "fast", 0, &err), 0, "%s", err.msg);
	cr_expect(r.n_layer == 2 && r.attn_only);
	cr_expect_eq(mb_zoo_recipe_get(&r, "induction", "paper", 0, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "no preset 'paper'"), "%s", err.msg);
	cr_assert_eq(mb_zoo_recipe_get(&r, "ioi", "fast", 0, &err), 0, "%s", err.msg);
	/* The IOI generator's held-out pairs (ioi_prompts.h defaults). */
	cr_expect(!r.attn_only && r.pair_seed == 0 && r.heldout_pair_fraction == 0.2);
	cr_expect_eq(mb_zoo_recipe_get(&r, "ioc", "fast", 0, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "unknown recipe 'ioc'"), "%s", err.msg);
}

/* The registry: every recipe is found by its name at each of its presets,
 * carries its table, passes its own checks and names its eval fields
 * (non-empty, distinct, at most MB_ZOO_EVAL_MAX); the joined name list is
 * the registry in order. */
Test(zoo, registry_recipes_load_at_every_preset_with_named_eval_fields)
{
	char names[256], want[256] = "";
	size_t len = 0;
	mb_error err;

	cr_assert_geq(mb_zoo_recipe_count(), 2);
	cr_expect_null(mb_zoo_recipe_name(mb_zoo_recipe_count()));
	for (size_t i = 0; i < mb_zoo_recipe_count(); i++) {
		const char *name = mb_zoo_recipe_name(i);
		const char *const *presets = mb_zoo_recipe_presets(i);
		cr_assert(name && presets && presets[0] && mb_zoo_recipe_summary(i));
		len += (size_t)snprintf(want + len, sizeof(want) - len, "%s%s", i ? ", " : "", name);
		for (size_t k = 0; presets[k]; k++) {
			mb_zoo_recipe r;
			size_t n;
			cr_assert_eq(mb_zoo_recipe_get(&r, name, presets[k], 9, &err), 0, "%s/%s: %s",
				     name, presets[k], err.msg);
			cr_expect_str_eq(r.name, name);
			cr_expect_str_eq(r.preset, presets[k]);
			cr_expect_eq(r.seed, 9);
			const mb_zoo_eval_field *f = mb_zoo_eval_fields(&r, &n);
			cr_assert(n >= 1 && n <= MB_ZOO_EVAL_MAX, "%s: %zu eval fields", name, n);
			for (size_t a = 0; a < n; a++) {
				cr_expect(f[a].name && f[a].name[0] && f[a].doc, "%s field %zu", name, a);
				cr_expect_str_neq(f[a].name, "step");
				for (size_t b = a + 1; b < n; b++)
					cr_expect_str_neq(f[a].name, f[b].name, "%s: field twice", name);
			}
			json_t *j = mb_zoo_recipe_to_json(&r);
			cr_assert_not_null(j);
			cr_expect_str_eq(json_string_value(json_object_get(j, "task")), name);
			json_decref(j);
		}
	}
	cr_expect_str_eq(mb_zoo_recipe_names(names, sizeof(names)), want);
	cr_expect_str_eq(mb_zoo_recipe_names(names, 4), "mod", "truncated to cap - 1");
}

Test(zoo, unknown_names_list_the_known_recipes_and_presets)
{
	mb_zoo_recipe r;
	mb_error err;
	cr_expect_eq(mb_zoo_recipe_get(&r, "ioc", "fast", 0, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "(known: modadd, induction") && strstr(err.msg, "facts") &&
			  strstr(err.msg, "ioi"),
		  "%s", err.msg);
	cr_expect_eq(mb_zoo_recipe_get(&r, "modadd", "slow", 0, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "(known: fast, paper)"), "%s", err.msg);
	/* a recipe that did not come from the registry has no table */
	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "handmade");
	cr_expect_eq(mb_zoo_recipe_check(&r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "recipe handmade: no recipe table"), "%s", err.msg);
}

Test(zoo, eval_get_reads_a_named_field_and_nan_for_an_unknown_one)
{
	mb_zoo_recipe r;
	mb_zoo_eval ev;
	mb_error err;
	size_t n;
	cr_assert_eq(mb_zoo_recipe_get(&r, "modadd", "fast", 0, &err), 0, "%s", err.msg);
	const mb_zoo_eval_field *f = mb_zoo_eval_fields(&r, &n);
	memset(&ev, 0, sizeof(ev));
	for (size_t i = 0; i < n; i++)
		ev.value[i] = 0.25 + (double)i;
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(mb_zoo_eval_get(&r, &ev, f[i].name), 0.25 + (double)i, "%s",
			     f[i].name);
	cr_expect_eq(mb_zoo_eval_get(&r, &ev, "test_acc"), ev.value[3]);
	cr_expect(isnan(mb_zoo_eval_get(&r, &ev, "induction_score")));
}

Test(zoo, recipe_check_names_the_inconsistent_field)
{
	mb_zoo_recipe r;
	mb_error err;
	cr_assert_eq(mb_zoo_recipe_get(&r, "modadd", "fast", 0, &err), 0);
	r.n_head = 3;
	cr_expect_eq(mb_zoo_recipe_check(&r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "n_head"), "%s", err.msg);
	cr_assert_eq(mb_zoo_recipe_get(&r, "modadd", "fast", 0, &err), 0);
	r.vocab_size = 10;
	cr_expect_eq(mb_zoo_recipe_check(&r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "vocab_size"), "%s", err.msg);
	cr_assert_eq(mb_zoo_recipe_get(&r, "induction", "fast", 0, &err), 0);
	r.seg_max = 40;
	cr_expect_eq(mb_zoo_recipe_check(&r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "seg_max"), "%s", err.msg);
	cr_assert_eq(mb_zoo_recipe_get(&r, "induction", "fast", 0, &err), 0);
	r.n_topics = 0;
	cr_expect_eq(mb_zoo_recipe_check(&r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "n_topics"), "%s", err.msg);
	r.n_topics = 2; /* S (up to seg_max tokens) must fit outside a topic */
	r.vocab_size = 40;
	r.seg_max = 20;
	cr_expect_eq(mb_zoo_recipe_check(&r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "outside a topic"), "%s", err.msg);
	cr_assert_eq(mb_zoo_recipe_get(&r, "induction", "fast", 0, &err), 0);
	r.topic_frac = 1.5;
	cr_expect_eq(mb_zoo_recipe_check(&r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "topic_frac"), "%s", err.msg);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	cr_assert(f);
	fputs(text, f);
	fclose(f);
}

Test(zoo, manifest_round_trips_and_catches_a_changed_or_extra_file)
{
	char dir[] = "/tmp/mb_zoo_manifest_XXXXXX", path[256];
	mb_zoo_manifest m, back;
	mb_error err;
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.json", dir);
	write_text(path, "{}\n");
	snprintf(path, sizeof(path), "%s/b.bin", dir);
	write_text(path, "abc");
	memset(&m, 0, sizeof(m));
	snprintf(m.name, sizeof(m.name), "modadd");
	snprintf(m.preset, sizeof(m.preset), "fast");
	m.seed = 42;
	snprintf(m.command, sizeof(m.command), "mechbench zoo train modadd");
	m.training_seconds = 12.5;
	snprintf(m.machine, sizeof(m.machine), "AMD EPYC");
	m.threads = 2;
	snprintf(m.commit, sizeof(m.commit), "abc123");
	m.nfiles = 2;
	snprintf(m.files[0], sizeof(m.files[0]), "a.json");
	snprintf(m.sha256[0], sizeof(m.sha256[0]),
		 "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356");
	snprintf(m.files[1], sizeof(m.files[1]), "b.bin");
	snprintf(m.sha256[1], sizeof(m.sha256[1]),
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	cr_assert_eq(mb_zoo_manifest_write(&m, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_zoo_manifest_read(&back, path, &err), 0, "%s", err.msg);
	cr_expect(memcmp(&m, &back, sizeof(m)) == 0, "round trip");
	cr_expect_eq(mb_zoo_manifest_check(&back, dir, &err), 0, "%s", err.msg);
	/* A changed file. */
	snprintf(path, sizeof(path), "%s/b.bin", dir);
	write_text(path, "abd");
	cr_expect_eq(mb_zoo_manifest_check(&back, dir, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "b.bin: sha256"), "%s", err.msg);
	write_text(path, "abc");
	/* An unlisted file. */
	snprintf(path, sizeof(path), "%s/extra.txt", dir);
	write_text(path, "x");
	cr_expect_eq(mb_zoo_manifest_check(&back, dir, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "extra.txt: file not listed"), "%s", err.msg);
	unlink(path);
	/* A bad digest in the file is a field error. */
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	write_text(path, "{\"name\": \"m\", \"preset\": \"fast\", \"seed\": 1, \"command\": \"c\",\n"
			 " \"training_seconds\": 1, \"machine\": \"x\", \"threads\": 1, \"commit\": \"c\",\n"
			 " \"files\": {\"a.json\": \"XYZ\"}}\n");
	cr_expect_eq(mb_zoo_manifest_read(&back, path, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "files.a.json") && strstr(err.msg, "sha256"), "%s", err.msg);
	write_text(path, "{\"name\": \"m\", \"preset\": \"fast\", \"seed\": 1, \"command\": \"c\",\n"
			 " \"training_seconds\": 1, \"machine\": \"x\", \"threads\": 1, \"commit\": \"c\",\n"
			 " \"filez\": {}}\n");
	cr_expect_eq(mb_zoo_manifest_read(&back, path, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "filez"), "%s", err.msg);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

/* The fuzz seeds (fuzz/corpus/manifest/): valid_* parse, bad_* are rejected
 * with one line naming the file and the field. */
Test(zoo, manifest_corpus_valid_files_parse_and_bad_files_are_rejected)
{
	static const char *const cases[][2] = {
		{"valid_modadd", NULL},
		{"valid_induction", NULL},
		{"bad_path", "files.../config.json"},
		{"bad_threads", "threads"},
		{"bad_truncated", "invalid JSON"},
		{"bad_unknown_key", "sead"},
		{"bad_uppercase_digest", "sha256"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[512];
		mb_zoo_manifest m;
		mb_error err;
		snprintf(path, sizeof(path), MB_SOURCE_DIR "/fuzz/corpus/manifest/%s", cases[i][0]);
		int rc = mb_zoo_manifest_read(&m, path, &err);
		if (!cases[i][1]) {
			cr_expect_eq(rc, 0, "%s: %s", cases[i][0], err.msg);
			continue;
		}
		cr_expect_eq(rc, MB_EINVALID, "%s accepted", cases[i][0]);
		cr_expect(strstr(err.msg, path) == err.msg, "%s: %s", cases[i][0], err.msg);
		cr_expect(strstr(err.msg, cases[i][1]), "%s: '%s' not in %s", cases[i][0], cases[i][1],
			  err.msg);
	}
}

/* ---- ioi ---- */

/* The word of a token id, from words[] (the recipe's own names of its ids). */
static const char *ioi_word(const mb_zoo_recipe *r, int32_t id, char (*words)[16])
{
	cr_assert(id >= 0 && id < r->vocab_size, "token id %d", id);
	cr_assert(words[id][0], "token id %d has no word", id);
	return words[id];
}

static int in_list(mb_ioi_list which, const char *s, size_t len)
{
	size_t n;
	const char *const *w = mb_ioi_words(which, &n);
	for (size_t i = 0; i < n; i++)
		if (strlen(w[i]) == len && strncmp(w[i], s, len) == 0)
			return 1;
	return 0;
}

/* Whether the first words of sent (n) are an instance of template text:
 * chunk by chunk, a placeholder chunk "{X}," matching a list word with the
 * same text around it, "{W}" any word that is not a name. names[0..3) get
 * the {A}, {B}, {S} words. Returns the number of words the template covers,
 * or 0. */
static int ioi_match(const char *text, const char *const *sent, int n, const char *names[3])
{
	int k = 0;
	while (*text) {
		size_t len = strcspn(text, " ");
		const char *ph = memchr(text, '{', len);
		if (k == n)
			return 0;
		if (!ph) {
			if (strlen(sent[k]) != len || strncmp(sent[k], text, len) != 0)
				return 0;
		} else if (ph[1] == 'W') {
			if (in_list(MB_IOI_NAMES, sent[k], strlen(sent[k])))
				return 0;
		} else {
			size_t pre = (size_t)(ph - text), post = len - pre - 3, wl = strlen(sent[k]);
			mb_ioi_list which = ph[1] == 'P'   ? MB_IOI_PLACES
					    : ph[1] == 'O' ? MB_IOI_OBJECTS
							   : MB_IOI_NAMES;
			if (wl < pre + post + 1 || strncmp(sent[k], text, pre) != 0 ||
			    strncmp(sent[k] + wl - post, ph + 3, post) != 0 ||
			    !in_list(which, sent[k] + pre, wl - pre - post))
				return 0;
			if (which == MB_IOI_NAMES)
				names[ph[1] == 'A' ? 0 : ph[1] == 'B' ? 1 : 2] = sent[k];
		}
		k++;
		text += len;
		text += *text == ' ';
	}
	return k;
}

/* 400 training rows: every row starts with [BOS]; no sentence is an instance
 * of a held-out template or starts like one (its part before {S}); no two
 * distinct names of a sentence form a held-out pair; every sentence that
 * starts like a training template (its part before {S}, then a name) is an
 * IOI sentence: it ends with "to" and IO (the name of the pair that S is
 * not), and its rest is another training template's part after {S} (a join,
 * mix_frac of the others) or one of the recipe's endings (ending_frac); the
 * IOI sentences make up ioi_frac of the rows' first sentences, snoise_frac of
 * them with a noise word before {S}, all within binomial noise. */
Test(zoo, ioi_training_text_holds_out_templates_and_pairs_and_ends_ioi_with_io)
{
	mb_zoo_recipe r;
	mb_zoo_ioi *d = NULL;
	mb_error err;
	int32_t row[256];
	char(*words)[16];
	const char *sent[64];
	const size_t nt = mb_ioi_template_count();
	uint8_t held[MB_IOI_MAX_TEMPLATES] = {0};
	const char *const *ho;
	size_t nho;
	int nioi = 0, nfull = 0, mixed = 0, ended = 0, nnoised = 0;

	cr_assert_eq(mb_zoo_recipe_get(&r, "ioi", "fast", 5, &err), 0, "%s", err.msg);
	cr_assert_leq(r.n_positions, 256);
	cr_assert_eq(mb_zoo_ioi_init(&d, &r, &err), 0, "%s", err.msg);
	words = calloc((size_t)r.vocab_size, sizeof(*words));
	for (int id = 0; id < r.vocab_size; id++)
		mb_zoo_ioi_word(words[id], id);
	ho = mb_zoo_ioi_heldout(&nho);
	cr_assert_geq(nho, 4, "at least four held-out templates");
	for (size_t i = 0; i < nho; i++) {
		cr_assert_geq(mb_ioi_template_find(ho[i]), 0, "held-out template %s", ho[i]);
		held[mb_ioi_template_find(ho[i])] = 1;
	}
	for (uint64_t i = 0; i < 400; i++) {
		int32_t again[256];
		int at = 1, first = 1;
		mb_zoo_ioi_row(row, d, "ioi/train", i);
		mb_zoo_ioi_row(again, d, "ioi/train", i);
		cr_assert_arr_eq(row, again, (size_t)r.n_positions * sizeof(row[0]));
		cr_assert_eq(row[0], 0, "row %llu starts with <bos>", (unsigned long long)i);
		for (int k = 1; k < r.n_positions; k++) {
			int n = 0, is_ioi = 0;
			if (row[k] != 1)
				continue;
			/* one whole sentence: row[at .. k) */
			for (int j = at; j < k; j++, n++)
				sent[n] = ioi_word(&r, row[j], words);
			at = k + 1;
			for (int a = 0; a < n; a++)
				for (int b = 0; b < n; b++)
					if (in_list(MB_IOI_NAMES, sent[a], strlen(sent[a])) &&
					    in_list(MB_IOI_NAMES, sent[b], strlen(sent[b])) &&
					    strcmp(sent[a], sent[b]) != 0)
						cr_assert(!mb_ioi_pair_heldout(r.pair_seed, r.heldout_pair_fraction,
									      sent[a], sent[b]),
							  "row %llu: held-out pair %s, %s",
							  (unsigned long long)i, sent[a], sent[b]);
			for (size_t t = 0; t < nt && !is_ioi; t++) {
				const mb_ioi_template *ti = mb_ioi_template_at(t);
				const char *names[3] = {NULL, NULL, NULL};
				const int pre = (int)(strstr(ti->text, "{S}") - ti->text);
				char text[512];
				int len, joined = 0, noised = 0;
				/* the part before {S}, then {S}, or a noise word and {S} */
				snprintf(text, sizeof(text), "%.*s{S}", pre, ti->text);
				len = ioi_match(text, sent, n, names);
				if (!len) {
					snprintf(text, sizeof(text), "%.*s{W} {S}", pre, ti->text);
					len = ioi_match(text, sent, n, names);
					noised = len > 0;
				}
				if (!len)
					continue;
				cr_assert(!held[t], "row %llu: held-out template %s's start in "
					  "training text", (unsigned long long)i, ti->id);
				is_ioi = 1;
				cr_assert(strcmp(names[2], names[0]) == 0 ||
					  strcmp(names[2], names[1]) == 0);
				cr_assert_geq(n, len + 2);
				cr_assert(strcmp(sent[n - 2], "to") == 0 || strcmp(sent[n - 2], "for") == 0,
					  "row %llu: '%s' before IO", (unsigned long long)i, sent[n - 2]);
				cr_assert_str_eq(sent[n - 1],
						 strcmp(names[2], names[0]) == 0 ? names[1] : names[0],
						 "row %llu: the IOI sentence ends with IO",
						 (unsigned long long)i);
				for (size_t u = 0; u < nt && !joined; u++) {
					const mb_ioi_template *tj = mb_ioi_template_at(u);
					snprintf(text, sizeof(text), "%.*s%s%s", pre, ti->text,
						 noised ? "{W} " : "", strstr(tj->text, "{S}"));
					if (!held[u] && ioi_match(text, sent, n, names) == n - 1)
						joined = 1 + (u != t);
				}
				nioi += first; /* the first sentence is never cut */
				nnoised += first && noised;
				mixed += first && joined == 2;
				ended += first && !joined;
			}
			first = 0;
		}
		nfull += at > 1;
	}
	cr_expect_eq(nfull, 400, "every row holds a whole sentence");
	double frac = nioi / 400.0, se = sqrt(r.ioi_frac * (1 - r.ioi_frac) / 400.0);
	cr_expect(fabs(frac - r.ioi_frac) < 4 * se, "IOI share %.3f of the rows' first "
		  "sentences, want %.2f", frac, r.ioi_frac);
	/* our endings: ending_frac of them, less the few that equal a training
	 * template's end ("{S} handed a {O} to": no adverb, a template's verb,
	 * "a {O}", no particle: about 4% of the endings) */
	double want = r.ending_frac;
	se = sqrt(want * (1 - want) / nioi);
	cr_expect(fabs((double)ended / nioi - want) < 4 * se + 0.05, "endings %d of %d, want %.3f",
		  ended, nioi, want);
	/* a join of two different templates: mix_frac of the rest, less the
	 * joins of a template with itself (1 / the training templates) */
	want = (1 - r.ending_frac) * r.mix_frac * (1 - 1.0 / (double)(nt - nho));
	se = sqrt(want * (1 - want) / nioi);
	cr_expect(fabs((double)mixed / nioi - want) < 4 * se + 0.04, "mixed %d of %d, want %.3f",
		  mixed, nioi, want);
	/* a noise word before {S}: snoise_frac of them */
	want = r.snoise_frac;
	se = sqrt(want * (1 - want) / nioi);
	cr_expect(fabs((double)nnoised / nioi - want) < 4 * se, "noise before S %d of %d, want %.3f",
		  nnoised, nioi, want);
	mb_zoo_ioi_free(d);
	free(words);
}
