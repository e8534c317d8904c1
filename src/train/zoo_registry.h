/*
 * zoo_registry.h: the zoo's recipes, one line each, in listing order (zoo
 * list, the usage text, the "known:" lists of messages). Each line names a
 * table `const mb_zoo_recipe_ops mb_zoo_recipe_<id>` defined in
 * src/train/zoo_<id>.c (zoo_int.h). Included with MB_ZOO_RECIPE defined;
 * no include guard on purpose.
 */
MB_ZOO_RECIPE(modadd)
MB_ZOO_RECIPE(induction)
MB_ZOO_RECIPE(facts)
MB_ZOO_RECIPE(ioi)
