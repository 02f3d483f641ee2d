// ESM entry: the implementation is CommonJS, so both entries share one
// module instance (one SDKError class for instanceof checks).
import sdk from './index.js';

export const { SecureAgent, SDKError, permissions, SCOPES, VERSION, verify } = sdk;
export default sdk;
