// Types of build-web-client.mjs for the TypeScript code that imports it (the size benchmark).
export interface WebClientMetafile {
  outputs: Record<string, { bytes: number; entryPoint?: string; imports: { path: string; kind: string; external?: boolean }[] }>;
}
export function buildWebClient(opts?: { outdir?: string; minify?: boolean }): Promise<WebClientMetafile>;
export function buildDeclarations(): boolean;
