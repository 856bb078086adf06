import { recipeJsonSchemaText } from '../recipe/json-schema.js';

/** `hepoly schema`: the recipe JSON Schema on stdout (`hepoly schema > recipe.schema.json`). */
export function runSchema(): void {
  process.stdout.write(recipeJsonSchemaText());
}
