// The entry points, under the name other modules were told to import from.
export { type ParsedDocument, MAX_DOCUMENT_BYTES, parseDocument, parseObjects, readDocumentFile } from './document.js'
