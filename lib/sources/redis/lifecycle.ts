// The Redis source's lifecycle in one place. Three things change independently (a connection
// drops in the middle of a list; SIGHUP asks for a relist while the store is unreachable), so they
// are three small machines rather than one product of them. Only the events below move them.
//
//   link      connecting ──both connections ready──► connected ──error or close──► connecting
//
//   position  listing ──snapshot read──► watching ──connection lost──► verifying
//             verifying ──epoch and revision still the feed's──► watching
//             any ──relist needed──► listing   (start, SIGHUP, gap, store reset or rolled back,
//                                               unreadable or foreign entry, a put while guarded)
//             The periodic resync (--sync-period) lists from any position once it is due.
//
//   serving   nothing ──state file loaded──► state-file ──list applied──► store ──list applied──► store
//             nothing ──list applied──► store
//             any ──an empty store with a new epoch, while we serve data──► guarded
//             guarded ──the store holds data again──► what it guarded, then ──list applied──► store
//
//   synced    false ──anything served (state file, list, guard)──► true; never goes back (/readyz)
//   closed    false ──close()──► true; the loop ends at its next turn
//
// An event the table does not allow throws: it would mean the source lost track of what it serves.

export type Link = 'connecting' | 'connected'
export type Position = 'listing' | 'verifying' | 'watching'
export type Serving = 'nothing' | 'state-file' | 'store' | 'guarded'

export class Lifecycle {
  private linkState: Link = 'connecting'
  private positionState: Position = 'listing'
  private servingState: Serving = 'nothing'
  /** What a guard keeps serving, and returns to once the store holds data again. */
  private guarding: Exclude<Serving, 'guarded'> = 'nothing'
  private servedOnce = false
  private isClosed = false

  get link (): Link { return this.linkState }
  get position (): Position { return this.positionState }
  get serving (): Serving { return this.servingState }
  /** Something is served: the state file, a list, or the last state kept by the guard. */
  get synced (): boolean { return this.servedOnce }
  get closed (): boolean { return this.isClosed }
  get guarded (): boolean { return this.servingState === 'guarded' }
  /** The served data came from the state file and no list has replaced it yet (guarded or not). */
  get servingFile (): boolean {
    return this.servingState === 'state-file' || (this.servingState === 'guarded' && this.guarding === 'state-file')
  }

  // link

  /** Both connections are ready. True when the link was down: the caller logs the (re)connect. */
  connected (): boolean {
    if (this.linkState === 'connected') return false
    this.linkState = 'connected'
    return true
  }

  /**
   * A connection failed or closed. True when the link was up: the caller logs the loss. Reading
   * on from where the feed stopped is only safe once the store is seen to be the same one.
   */
  lost (): boolean {
    const wasUp = this.linkState === 'connected'
    this.linkState = 'connecting'
    if (this.positionState === 'watching') this.positionState = 'verifying'
    return wasUp
  }

  /** False when already closed. */
  close (): boolean {
    if (this.isClosed) return false
    this.isClosed = true
    return true
  }

  // position

  /** Relist before reading the feed again. */
  mustList (): void { this.positionState = 'listing' }

  /** A snapshot was read: the feed is followed from its revision. */
  snapshotRead (): void { this.positionState = 'watching' }

  /** The store was checked (after a reconnect, or when a read was idle). A pending relist stays pending. */
  verified (): void {
    if (this.positionState === 'verifying') this.positionState = 'watching'
  }

  // serving

  stateFileLoaded (): void { this.serve('state file loaded', ['nothing'], 'state-file') }

  listApplied (): void { this.serve('list applied', ['nothing', 'state-file', 'store'], 'store') }

  /** The store came back empty under a new epoch while we serve data: keep serving it. */
  guard (): void {
    if (this.servingState !== 'guarded') this.guarding = this.servingState
    this.servingState = 'guarded'
    this.servedOnce = true
  }

  /** The store holds data again: back to what the guard kept, until the list is applied. */
  unguard (): void { this.serve('store holds data again', ['guarded'], this.guarding) }

  private serve (event: string, from: readonly Serving[], to: Serving): void {
    if (!from.includes(this.servingState)) {
      throw new Error(`redis source: "${event}" is not a transition from "${this.servingState}" (a bug in svcproxy)`)
    }
    this.servingState = to
    if (to !== 'nothing') this.servedOnce = true
  }
}
