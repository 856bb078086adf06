import { defineCommand } from './command.js';

/** `hepoly schema`: the recipe JSON Schema on stdout (`hepoly schema > recipe.schema.json`). */
export async function runSchema(): Promise<void> {
  const { recipeJsonSchemaText } = await import('../recipe/json-schema.js');
  process.stdout.write(recipeJsonSchemaText());
}

export const schemaCommand = defineCommand(
  'schema', 'print the recipe JSON Schema (hepoly schema > recipe.schema.json), for editors and validators', (y) => y, () => runSchema(),
);
