/*
 * config: config.json to mb_engine_config. Every accepted variant gives the
 * right architecture; every error is one line naming config.json:line:col and
 * the field.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include <mechbench/model.h>

#define NEOX                                                                          \
	"\"model_type\": \"gpt_neox\", \"vocab_size\": 50, \"max_position_embeddings\": 8, " \
	"\"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "          \
	"\"intermediate_size\": 64"
#define BASE "\"vocab_size\": 50, \"n_positions\": 8, \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 4"

static int parse(mb_engine_config *c, const char *text, mb_error *err)
{
	memset(c, 0, sizeof(*c));
	mb_error_clear(err);
	return mb_model_config_parse(c, text, strlen(text), "config.json", err);
}

Test(config, minimal_config_gets_gpt2_defaults)
{
	mb_engine_config c;
	mb_error err;

	cr_assert_eq(parse(&c, "{" BASE "}", &err), 0, "%s", err.msg);
	cr_expect_eq(c.n_vocab, 50);
	cr_expect_eq(c.n_ctx, 8);
	cr_expect_eq(c.d_model, 16);
	cr_expect_eq(c.n_layer, 2);
	cr_expect_eq(c.n_head, 4);
	cr_expect_eq(c.d_head, 4);
	cr_expect_eq(c.d_mlp, 64);
	cr_expect_eq(c.act, MB_ACT_GELU_NEW);
	cr_expect_eq(c.norm, MB_NORM_LN);
	cr_expect_eq(c.attn_only, 0);
	cr_expect_eq(c.tied, 1);
	cr_expect_float_eq(c.ln_eps, 1e-5f, 1e-12f);
}

Test(config, variants_are_read_from_their_fields)
{
	mb_engine_config c;
	mb_error err;

	cr_assert_eq(parse(&c, "{" BASE ", \"attn_only\": true, \"n_inner\": null}", &err), 0, "%s",
		     err.msg);
	cr_expect_eq(c.attn_only, 1);
	cr_expect_eq(c.d_mlp, 0);
	cr_assert_eq(parse(&c, "{" BASE ", \"normalization_type\": \"none\", \"activation_function\": "
			       "\"relu\", \"tie_word_embeddings\": false, \"n_inner\": 40}",
			   &err),
		     0, "%s", err.msg);
	cr_expect_eq(c.norm, MB_NORM_NONE);
	cr_expect_eq(c.act, MB_ACT_RELU);
	cr_expect_eq(c.tied, 0);
	cr_expect_eq(c.d_mlp, 40);
	cr_assert_eq(parse(&c, "{" BASE ", \"activation_function\": \"gelu\", \"layer_norm_epsilon\": "
			       "0.001, \"normalization_type\": \"LN\", \"model_type\": \"gpt2\", "
			       "\"n_ctx\": 8}",
			   &err),
		     0, "%s", err.msg);
	cr_expect_eq(c.act, MB_ACT_GELU);
	cr_expect_float_eq(c.ln_eps, 1e-3f, 1e-9f);
	cr_assert_eq(parse(&c, "{" BASE ", \"normalization_type\": null}", &err), 0, "%s", err.msg);
	cr_expect_eq(c.norm, MB_NORM_NONE);
}

/* The config.json of Hugging Face's gpt2 (fields as published), shrunk. */
Test(config, a_hub_gpt2_config_with_its_extra_fields_is_accepted)
{
	static const char hub[] =
		"{\n  \"activation_function\": \"gelu_new\",\n  \"architectures\": [\"GPT2LMHeadModel\"],\n"
		"  \"attn_pdrop\": 0.1,\n  \"bos_token_id\": 50256,\n  \"embd_pdrop\": 0.1,\n"
		"  \"eos_token_id\": 50256,\n  \"initializer_range\": 0.02,\n"
		"  \"layer_norm_epsilon\": 1e-05,\n  \"model_type\": \"gpt2\",\n  \"n_ctx\": 1024,\n"
		"  \"n_embd\": 768,\n  \"n_head\": 12,\n  \"n_layer\": 12,\n  \"n_positions\": 1024,\n"
		"  \"resid_pdrop\": 0.1,\n  \"summary_activation\": null,\n"
		"  \"summary_first_dropout\": 0.1,\n  \"summary_proj_to_labels\": true,\n"
		"  \"summary_type\": \"cls_index\",\n  \"summary_use_proj\": true,\n"
		"  \"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}},\n"
		"  \"vocab_size\": 50257, \"_name_or_path\": \"gpt2\"\n}\n";
	mb_engine_config c;
	mb_error err;

	cr_assert_eq(parse(&c, hub, &err), 0, "%s", err.msg);
	cr_expect_eq(c.d_model, 768);
	cr_expect_eq(c.d_mlp, 3072);
	cr_expect_eq(c.n_vocab, 50257);
}

/* Inline arrays, not pointers: Criterion re-executes the binary for each
 * parameter, so pointers into the parent's address space would dangle. */
typedef struct bad_case {
	char text[400];
	char expect[80]; /* substring of the one-line message */
} bad_case;

static bad_case bad_cases[] = {
	{"{\"n_positions\": 8, \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 4}",
	 "config.json:1:1: vocab_size: required field is missing"},
	{"{\"vocab_size\": 50, \"n_positions\": 8, \"n_layer\": 2, \"n_head\": 4}",
	 "n_embd: required field is missing"},
	{"{\"vocab_size\": 50, \"n_positions\": 8, \"n_embd\": 16, \"n_head\": 4}",
	 "n_layer: required field is missing"},
	{"{\"vocab_size\": 50, \"n_positions\": 8, \"n_embd\": 16, \"n_layer\": 2}",
	 "n_head: required field is missing"},
	{"{\"vocab_size\": 50, \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 4}",
	 "n_positions: required field is missing"},
	{"{\"vocab_size\": 50, \"n_positions\": 8, \"n_embd\": 18, \"n_layer\": 2, \"n_head\": 4}",
	 "n_head: n_embd 18 is not divisible by n_head 4"},
	{"{\"vocab_size\": 50, \"n_positions\": 8, \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 0}",
	 "n_head: 0 is out of range"},
	{"{\"vocab_size\": -3, \"n_positions\": 8, \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 4}",
	 "vocab_size: -3 is out of range"},
	{"{\"vocab_size\": 50, \"n_positions\": 8, \"n_embd\": 16, \"n_layer\": 0, \"n_head\": 4}",
	 "n_layer: 0 is out of range"},
	{"{\"vocab_size\": 50.5, \"n_positions\": 8, \"n_embd\": 16, \"n_layer\": 2, \"n_head\": 4}",
	 "vocab_size: expected an integer"},
	{"{" BASE ", \"n_inner\": \"big\"}", "n_inner: expected an integer"},
	{"{" BASE ", \"n_inner\": 0}", "n_inner: 0 is out of range"},
	{"{" BASE ", \"n_ctx\": 16}", "n_ctx: 16 differs from n_positions 8"},
	{"{" BASE ", \"activation_function\": \"swish\"}",
	 "activation_function: \"swish\" is not supported"},
	{"{" BASE ", \"activation_function\": 3}", "activation_function: expected a string"},
	{"{" BASE ", \"normalization_type\": \"LNPre\"}",
	 "normalization_type: \"LNPre\" is not supported"},
	{"{" BASE ", \"normalization_type\": 1}", "normalization_type: expected a string"},
	{"{" BASE ", \"attn_only\": 1}", "attn_only: expected true or false"},
	{"{" BASE ", \"tie_word_embeddings\": \"yes\"}", "tie_word_embeddings: expected true or false"},
	{"{" BASE ", \"layer_norm_epsilon\": 0}", "layer_norm_epsilon: 0 must be in (0, 1)"},
	{"{" BASE ", \"layer_norm_epsilon\": -1e-5}", "layer_norm_epsilon: -1e-05 must be in (0, 1)"},
	{"{" BASE ", \"model_type\": \"llama\"}", "model_type: \"llama\" is not supported"},
	{"{" BASE ", \"scale_attn_by_inverse_layer_idx\": true}",
	 "scale_attn_by_inverse_layer_idx: true is not supported"},
	{"{" BASE ", \"reorder_and_upcast_attn\": true}", "reorder_and_upcast_attn: true is not supported"},
	{"{" BASE ", \"add_cross_attention\": true}", "add_cross_attention: true is not supported"},
	{"{" BASE ", \"scale_attn_weights\": false}", "scale_attn_weights: false is not supported"},
	{"{" BASE ", \"atn_only\": true}", "atn_only: unknown field"},
	{"[1, 2]", "config.json:1:1: (root): expected a JSON object"},
	{"{" BASE ",\n  \"n_inner\": }", "config.json:2:"},
	{"{" NEOX ", \"rotary_pct\": 0.1}", "rotary_pct: 0.1 of d_head 8 gives 0 rotary dims"},
	{"{" NEOX ", \"rotary_pct\": 0.375}", "rotary_pct: 0.375 of d_head 8 gives 3 rotary dims"},
	{"{" NEOX ", \"rotary_pct\": 1.5}", "rotary_pct: 1.5 must be in (0, 1]"},
	{"{" NEOX ", \"rotary_pct\": 0.5, \"partial_rotary_factor\": 0.5}",
	 "give rotary_pct or partial_rotary_factor, not both"},
	{"{" NEOX ", \"rotary_emb_base\": 1}", "rotary_emb_base: 1 must be > 1"},
	{"{" NEOX ", \"rope_scaling\": {\"type\": \"linear\"}}", "rope_scaling: is not supported"},
	{"{" NEOX ", \"attention_bias\": false}", "attention_bias: false is not supported"},
	{"{" NEOX ", \"hidden_act\": \"silu\"}", "hidden_act: \"silu\" is not supported"},
	{"{" NEOX ", \"use_parallel_residual\": 1}", "use_parallel_residual: expected true or false"},
	{"{" NEOX ", \"n_embd\": 8}", "n_embd: unknown field (not a GPTNeoXConfig field"},
	{"{\"model_type\": \"gpt_neox\", \"vocab_size\": 10, \"hidden_size\": 16}",
	 "max_position_embeddings: required field is missing"},
};

ParameterizedTestParameters(config, every_bad_config_is_one_line_naming_the_field)
{
	return cr_make_param_array(bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(bad_case *bc, config, every_bad_config_is_one_line_naming_the_field)
{
	mb_engine_config c;
	mb_error err;
	int rc = parse(&c, bc->text, &err);

	cr_assert_lt(rc, 0, "accepted: %s", bc->text);
	cr_expect(strstr(err.msg, bc->expect) != NULL, "message \"%s\" lacks \"%s\"", err.msg,
		  bc->expect);
	cr_expect(strncmp(err.msg, "config.json:", 12) == 0, "message \"%s\" does not name the file",
		  err.msg);
	cr_expect(strchr(err.msg, '\n') == NULL);
}

Test(config, a_pythia_config_gets_rotary_parallel_untied_exact_gelu)
{
	mb_engine_config c;
	mb_error err;

	cr_assert_eq(parse(&c, "{" NEOX "}", &err), 0, "%s", err.msg);
	cr_expect_eq(c.pos, MB_POS_ROTARY);
	cr_expect_eq(c.rotary_dim, 2); /* int(8 * 0.25) */
	cr_expect_float_eq(c.rotary_base, 10000.0f, 1e-3f);
	cr_expect_eq(c.parallel, 1);
	cr_expect_eq(c.tied, 0);
	cr_expect_eq(c.act, MB_ACT_GELU);
	cr_expect_eq(c.d_mlp, 64);
	cr_expect_eq(c.n_ctx, 8);
	cr_assert_eq(parse(&c, "{" NEOX ", \"partial_rotary_factor\": 1.0, \"rope_theta\": 500, "
			       "\"use_parallel_residual\": false, \"tie_word_embeddings\": true, "
			       "\"hidden_act\": \"gelu_new\", \"rope_scaling\": null}",
		     &err),
		     0, "%s", err.msg);
	cr_expect_eq(c.rotary_dim, 8);
	cr_expect_float_eq(c.rotary_base, 500.0f, 1e-3f);
	cr_expect_eq(c.parallel, 0);
	cr_expect_eq(c.tied, 1);
	cr_expect_eq(c.act, MB_ACT_GELU_NEW);
}

Test(config, a_missing_file_is_an_error_naming_it)
{
	mb_engine_config c;
	mb_error err = {0};

	cr_expect_lt(mb_model_config_load(&c, "/nonexistent/config.json", &err), 0);
	cr_expect(strstr(err.msg, "/nonexistent/config.json") != NULL, "%s", err.msg);
}

Test(config, the_engine_check_rejects_inconsistent_structs)
{
	mb_engine_config c;
	mb_error err;

	cr_assert_eq(parse(&c, "{" BASE "}", &err), 0);
	c.d_head = 5;
	cr_expect_lt(mb_engine_config_check(&c, &err), 0);
	cr_expect(strstr(err.msg, "d_head") != NULL, "%s", err.msg);
	cr_assert_eq(parse(&c, "{" BASE "}", &err), 0);
	c.attn_only = 1;
	cr_expect_lt(mb_engine_config_check(&c, &err), 0);
	cr_expect(strstr(err.msg, "n_inner") != NULL, "%s", err.msg);
}
