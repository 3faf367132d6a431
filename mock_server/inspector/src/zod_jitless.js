// Imported before the SDK: zod (bundled with the SDK) then builds its parsers without `new Function`, which the
// inspector's Content-Security-Policy (no 'unsafe-eval') refuses. Parsing results are the same.
import { config } from "zod/v4/core";

config({ jitless: true });
